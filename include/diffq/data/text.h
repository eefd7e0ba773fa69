#pragma once
/// \file text.h
/// Word-level text data: the King James Bible (Debian `bible-kjv`) split by
/// books, a tokenizer and a vocabulary.
///
/// Source format: one verse a line, prefixed by its reference, as printed by
/// `bible -f "Gen1:1-Rev22:21"` (e.g. `Ge1:1 In the beginning ...`; book
/// abbreviations `Ge Exo ... 1Jn 2Jn 3Jn Jude Rev`). The prefix is stripped.
///
/// Split (fixed, by book name, independent of vocabulary, context and seed):
///   - valid: Hebrews (`Heb`);
///   - test:  the last 8 books, James .. Revelation
///            (`Jas 1Pet 2Pet 1Jn 2Jn 3Jn Jude Rev`);
///   - train: every other book (Genesis .. Philemon).
/// Tokenizer: lower-case; a token is a maximal run of letters, digits and
/// apostrophes, or a single punctuation character; every verse ends with
/// `<eos>`. Vocabulary: built on the train split only, ids 0 = `<unk>`,
/// 1 = `<eos>`, then words by decreasing count (ties alphabetical), capped at
/// `max_size` entries in total; other words map to `<unk>`.

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

namespace diffq {
namespace data {

/// The command printing the whole KJV text.
constexpr const char* kBibleCommand = "bible -f \"Gen1:1-Rev22:21\"";

/// One verse: the book abbreviation as printed, and the verse text.
struct Verse {
  /// Book abbreviation ("Ge", "1Jn", "Rev").
  std::string book;
  /// Text without the reference prefix.
  std::string text;
};

/// Parses text in the `bible` output format. Blank lines are skipped; a line
/// without a reference prefix throws `diffq::Error` naming `what` and the line
/// number.
std::vector<Verse> parse_verses(const std::string& text, const std::string& what);

/// Reads verses from `path`, or runs `bible` when `path` is empty or "bible".
/// Throws `diffq::Error` naming the path (or the command) on failure.
std::vector<Verse> load_kjv(const std::string& path = "");

/// Which split a book belongs to: "train", "valid" or "test".
std::string split_of_book(const std::string& book);

/// The split of every verse.
std::vector<std::string> split_of_verses(const std::vector<Verse>& verses);

/// Lower-cases and splits one verse into tokens (without `<eos>`).
std::vector<std::string> tokenize(const std::string& text);

/// A word vocabulary.
class Vocabulary {
 public:
  /// Builds the vocabulary from tokenized `verses`, capped at `max_size`
  /// entries including `<unk>` and `<eos>` (0 = no cap).
  static Vocabulary build(const std::vector<std::vector<std::string>>& verses, int64_t max_size);
  /// Id of a word (`<unk>` = 0 when absent).
  int64_t id(const std::string& word) const;
  /// Word of an id.
  const std::string& word(int64_t id) const { return words_.at(static_cast<size_t>(id)); }
  /// Number of entries.
  int64_t size() const { return static_cast<int64_t>(words_.size()); }
  /// Every word, by id.
  const std::vector<std::string>& words() const { return words_; }

 private:
  std::vector<std::string> words_;
  std::unordered_map<std::string, int64_t> ids_;
};

/// The language-modelling corpus: token ids of each split, in text order.
struct TextCorpus {
  /// Vocabulary (built on train).
  Vocabulary vocab;
  /// Token ids of the train split (verses concatenated, each ending in <eos>).
  std::vector<int64_t> train;
  /// Token ids of the validation split.
  std::vector<int64_t> valid;
  /// Token ids of the test split.
  std::vector<int64_t> test;
  /// Out-of-vocabulary rate of the test split.
  double test_unk_rate = 0.0;
};

/// Tokenizes and splits `verses`; vocabulary capped at `max_vocab`.
TextCorpus make_corpus(const std::vector<Verse>& verses, int64_t max_vocab);

}  // namespace data
}  // namespace diffq
