# Text data (King James Bible) for the language-modelling task. Owned by the
# command-line tool work (issue 4).
target_sources(diffq_data PRIVATE ${CMAKE_CURRENT_LIST_DIR}/../src/data/kjv.cpp)
