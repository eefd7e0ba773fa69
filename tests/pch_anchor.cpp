// Owns the precompiled torch header reused by the test executables.
