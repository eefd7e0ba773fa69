// Data: the IDX parser (valid, corrupt, truncated) and the KJV text splitter,
// tokenizer and vocabulary, on small fixtures.
#include <gtest/gtest.h>

#include <cstdlib>

#include "diffq/data/idx.h"
#include "diffq/data/text.h"
#include "diffq/error.h"
#include "test_util_cli.h"

using namespace diffq::data;
using cli_test::contains;

TEST(IdxData, ParsesShapeAndValues) {
  const auto a = parse_idx(cli_test::idx_bytes({2, 3}, {1, 2, 3, 4, 5, 6}), "fixture");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.values, (std::vector<uint8_t>{1, 2, 3, 4, 5, 6}));
}

TEST(IdxData, TruncatedPayloadIsAnError) {
  try {
    parse_idx(cli_test::idx_bytes({2, 3}, {1, 2, 3, 4}), "fixture.idx");
    FAIL() << "no error";
  } catch (const diffq::Error& e) {
    EXPECT_TRUE(contains(e.what(), "fixture.idx")) << e.what();
  }
}

TEST(IdxData, TruncatedHeaderIsAnError) {
  EXPECT_THROW(parse_idx({0, 0, 8}, "x"), diffq::Error);
  EXPECT_THROW(parse_idx({0, 0, 8, 2, 0, 0}, "x"), diffq::Error);
}

TEST(IdxData, BadMagicAndTypeAreErrors) {
  auto bytes = cli_test::idx_bytes({2}, {1, 2});
  auto bad = bytes;
  bad[0] = 7;
  EXPECT_THROW(parse_idx(bad, "x"), diffq::Error);
  bad = bytes;
  bad[2] = 0x0D;  // float32: unsupported
  EXPECT_THROW(parse_idx(bad, "x"), diffq::Error);
}

TEST(IdxData, TrailingBytesAreAnError) {
  auto bytes = cli_test::idx_bytes({2}, {1, 2});
  bytes.push_back(9);
  EXPECT_THROW(parse_idx(bytes, "x"), diffq::Error);
}

TEST(IdxData, MissingFileNamesThePath) {
  try {
    read_idx("/nonexistent/dir/train-images-idx3-ubyte.gz");
    FAIL() << "no error";
  } catch (const diffq::Error& e) {
    EXPECT_TRUE(contains(e.what(), "/nonexistent/dir/train-images-idx3-ubyte.gz")) << e.what();
  }
}

TEST(TextData, ParsesVersesAndStripsReferences) {
  const auto v = parse_verses("Ge1:1 In the beginning.\n\n1Jn1:5 God is light.\r\nRev22:21 Amen.\n", "t");
  ASSERT_EQ(v.size(), 3u);
  EXPECT_EQ(v[0].book, "Ge");
  EXPECT_EQ(v[0].text, "In the beginning.");
  EXPECT_EQ(v[1].book, "1Jn");
  EXPECT_EQ(v[1].text, "God is light.");
  EXPECT_EQ(v[2].book, "Rev");
}

TEST(TextData, MalformedLineNamesSourceAndLine) {
  try {
    parse_verses("Ge1:1 ok\nthis is not a verse\n", "my.txt");
    FAIL() << "no error";
  } catch (const diffq::Error& e) {
    EXPECT_TRUE(contains(e.what(), "my.txt:2")) << e.what();
  }
  EXPECT_THROW(parse_verses("\n\n", "empty"), diffq::Error);
}

TEST(TextData, MissingFileNamesThePath) {
  try {
    load_kjv("/nonexistent/kjv.txt");
    FAIL() << "no error";
  } catch (const diffq::Error& e) {
    EXPECT_TRUE(contains(e.what(), "/nonexistent/kjv.txt")) << e.what();
  }
}

TEST(TextData, SplitIsByBook) {
  EXPECT_EQ(split_of_book("Ge"), "train");
  EXPECT_EQ(split_of_book("Phmn"), "train");
  EXPECT_EQ(split_of_book("Heb"), "valid");
  for (const char* b : {"Jas", "1Pet", "2Pet", "1Jn", "2Jn", "3Jn", "Jude", "Rev"})
    EXPECT_EQ(split_of_book(b), "test") << b;
}

TEST(TextData, Tokenizer) {
  EXPECT_EQ(tokenize("And God said, Let there be light: Jacob's."),
            (std::vector<std::string>{"and", "god", "said", ",", "let", "there", "be", "light", ":",
                                      "jacob's", "."}));
  EXPECT_TRUE(tokenize("   ").empty());
}

TEST(TextData, VocabularyOrderAndCap) {
  const std::vector<std::vector<std::string>> verses = {{"b", "a", "c", "a"}, {"c", "d", "a"}};
  auto v = Vocabulary::build(verses, 0);
  EXPECT_EQ(v.words(), (std::vector<std::string>{"<unk>", "<eos>", "a", "c", "b", "d"}));
  auto capped = Vocabulary::build(verses, 4);
  EXPECT_EQ(capped.size(), 4);
  EXPECT_EQ(capped.id("a"), 2);
  EXPECT_EQ(capped.id("b"), 0);  // <unk>
  EXPECT_THROW(Vocabulary::build(verses, 1), diffq::Error);
}

TEST(TextData, CorpusOnFixtureIsStable) {
  const auto verses = load_kjv(std::string(DIFFQ_CLI_FIXTURES) + "/kjv_tiny.txt");
  ASSERT_EQ(verses.size(), 10u);
  const auto a = make_corpus(verses, 30);
  const auto b = make_corpus(verses, 30);
  EXPECT_EQ(a.train, b.train);
  EXPECT_EQ(a.test, b.test);
  EXPECT_EQ(a.vocab.words(), b.vocab.words());
  EXPECT_EQ(a.vocab.size(), 30);
  // 5 train verses, 2 valid, 3 test; each ends with <eos> (id 1).
  auto eos = [](const std::vector<int64_t>& t) { return std::count(t.begin(), t.end(), int64_t(1)); };
  EXPECT_EQ(eos(a.train), 5);
  EXPECT_EQ(eos(a.valid), 2);
  EXPECT_EQ(eos(a.test), 3);
  EXPECT_EQ(a.vocab.word(2), "the");  // most frequent train token
  EXPECT_GT(a.test_unk_rate, 0.0);
}

TEST(TextData, RealBibleSplit) {
  if (std::system("command -v bible >/dev/null 2>&1") != 0) GTEST_SKIP() << "bible-kjv not installed";
  const auto verses = load_kjv();
  ASSERT_EQ(verses.size(), 31102u);
  const auto splits = split_of_verses(verses);
  EXPECT_EQ(std::count(splits.begin(), splits.end(), "valid"), 303);
  EXPECT_EQ(std::count(splits.begin(), splits.end(), "test"), 835);
  EXPECT_EQ(verses.front().book, "Ge");
  EXPECT_EQ(verses.back().book, "Rev");
}
