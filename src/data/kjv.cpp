// The King James Bible as a word-level language-modelling corpus.
#include "diffq/data/text.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include "diffq/error.h"
#include "diffq/regular_file.h"

namespace diffq {
namespace data {

namespace {

// The books as the `bible` command abbreviates them.
const std::set<std::string>& known_books() {
  static const std::set<std::string> books = {
      "Ge",    "Exo",   "Lev",   "Num",  "Deu",  "Josh", "Jdgs", "Ruth", "1Sm",  "2Sm",   "1Ki",  "2Ki",
      "1Chr",  "2Chr",  "Ezra",  "Neh",  "Est",  "Job",  "Psa",  "Prv",  "Eccl", "SSol",  "Isa",  "Jer",
      "Lam",   "Eze",   "Dan",   "Hos",  "Joel", "Amos", "Obad", "Jonah", "Mic", "Nahum", "Hab",  "Zep",
      "Hag",   "Zec",   "Mal",   "Mat",  "Mark", "Luke", "John", "Acts", "Rom",  "1Cor",  "2Cor", "Gal",
      "Eph",   "Phi",   "Col",   "1Th",  "2Th",  "1Tim", "2Tim", "Titus", "Phmn", "Heb",  "Jas",  "1Pet",
      "2Pet",  "1Jn",   "2Jn",   "3Jn",  "Jude", "Rev"};
  return books;
}

// The longest chapter and verse numbers of the King James Bible (Psalms 150, Psalm 119:176).
constexpr long kMaxChapter = 150, kMaxVerse = 176;

// The number of the `count` digits at `line[begin]`, or -1 when above `max`.
long reference_number(const std::string& line, size_t begin, size_t count, long max) {
  if (count > 3) return -1;
  const long n = std::stol(line.substr(begin, count));
  return n <= max ? n : -1;
}

// Splits "Ge1:1 In the beginning" into ("Ge", "In the beginning"); false when
// the line has no reference prefix.
bool split_reference(const std::string& line, std::string& book, std::string& text) {
  size_t i = 0;
  if (i < line.size() && std::isdigit(static_cast<unsigned char>(line[i]))) ++i;  // "1Jn"
  const size_t book_begin = 0;
  size_t letters = i;
  while (letters < line.size() && std::isalpha(static_cast<unsigned char>(line[letters]))) ++letters;
  if (letters == i) return false;
  size_t j = letters;
  size_t digits = j;
  while (digits < line.size() && std::isdigit(static_cast<unsigned char>(line[digits]))) ++digits;
  if (digits == j || digits >= line.size() || line[digits] != ':') return false;
  size_t k = digits + 1;
  size_t verse_digits = k;
  while (verse_digits < line.size() && std::isdigit(static_cast<unsigned char>(line[verse_digits])))
    ++verse_digits;
  if (verse_digits == k) return false;
  if (verse_digits < line.size() && line[verse_digits] != ' ') return false;
  book = line.substr(book_begin, letters - book_begin);
  DIFFQ_CHECK(known_books().count(book), "unknown book '", book, "' (the books are abbreviated as the output of ",
              kBibleCommand, " does: Ge, Exo, ..., Rev)");
  DIFFQ_CHECK(reference_number(line, j, digits - j, kMaxChapter) >= 1, "chapter number '",
              line.substr(j, digits - j), "' outside 1..", kMaxChapter);
  DIFFQ_CHECK(reference_number(line, k, verse_digits - k, kMaxVerse) >= 1, "verse number '",
              line.substr(k, verse_digits - k), "' outside 1..", kMaxVerse);
  text = verse_digits < line.size() ? line.substr(verse_digits + 1) : std::string();
  return true;
}

}  // namespace

std::vector<Verse> parse_verses(const std::string& text, const std::string& what) {
  std::vector<Verse> verses;
  std::istringstream in(text);
  std::string line;
  int64_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    Verse verse;
    bool is_verse = false;
    try {
      is_verse = split_reference(line, verse.book, verse.text);
    } catch (const Error& e) {
      throw Error(detail::concat(what, ":", number, ": ", e.what()));
    }
    DIFFQ_CHECK(is_verse, what, ":", number, ": not a verse line of the form 'Ge1:1 text' (the output of ",
                kBibleCommand, ")");
    verses.push_back(std::move(verse));
  }
  DIFFQ_CHECK(!verses.empty(), what, ": no verse found");
  return verses;
}

std::vector<Verse> load_kjv(const std::string& path) {
  std::string text;
  std::string what;
  if (path.empty() || path == "bible") {
    what = std::string("the output of `") + kBibleCommand + "`";
    FILE* pipe = ::popen((std::string(kBibleCommand) + " 2>/dev/null").c_str(), "r");
    DIFFQ_CHECK(pipe != nullptr, "cannot run ", kBibleCommand,
                " (install the Debian package bible-kjv)");
    char buffer[1 << 16];
    size_t n;
    while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) text.append(buffer, n);
    const int status = ::pclose(pipe);
    DIFFQ_CHECK(status == 0 && !text.empty(), "cannot run ", kBibleCommand,
                " (exit status ", status, "; install the Debian package bible-kjv)");
  } else {
    what = path;
    require_regular_file(path, "the text file");
    std::ifstream in(path, std::ios::binary);
    DIFFQ_CHECK(in.good(), "cannot read the text file '", path, "'");
    std::ostringstream all;
    all << in.rdbuf();
    text = all.str();
  }
  return parse_verses(text, what);
}

std::string split_of_book(const std::string& book) {
  static const std::set<std::string> test = {"Jas", "1Pet", "2Pet", "1Jn",
                                             "2Jn", "3Jn",  "Jude", "Rev"};
  if (book == "Heb") return "valid";
  if (test.count(book)) return "test";
  return "train";
}

std::vector<std::string> split_of_verses(const std::vector<Verse>& verses) {
  std::vector<std::string> out;
  out.reserve(verses.size());
  for (const auto& v : verses) out.push_back(split_of_book(v.book));
  return out;
}

std::vector<std::string> tokenize(const std::string& text) {
  std::vector<std::string> tokens;
  std::string word;
  auto flush = [&] {
    if (!word.empty()) tokens.push_back(std::move(word));
    word.clear();
  };
  for (char raw : text) {
    const auto c = static_cast<unsigned char>(raw);
    if (std::isalnum(c) || c == '\'' || c >= 0x80) {
      word.push_back(static_cast<char>(std::tolower(c)));
    } else {
      flush();
      if (!std::isspace(c)) tokens.emplace_back(1, static_cast<char>(c));
    }
  }
  flush();
  return tokens;
}

Vocabulary Vocabulary::build(const std::vector<std::vector<std::string>>& verses,
                             int64_t max_size) {
  DIFFQ_CHECK(max_size == 0 || max_size >= 2, "vocabulary size ", max_size,
              " must be 0 (no cap) or at least 2");
  std::unordered_map<std::string, int64_t> counts;
  for (const auto& verse : verses)
    for (const auto& w : verse) ++counts[w];
  std::vector<std::pair<std::string, int64_t>> sorted(counts.begin(), counts.end());
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  Vocabulary vocab;
  vocab.words_ = {"<unk>", "<eos>"};
  for (const auto& entry : sorted) {
    if (max_size > 0 && static_cast<int64_t>(vocab.words_.size()) >= max_size) break;
    if (entry.first == "<unk>" || entry.first == "<eos>") continue;
    vocab.words_.push_back(entry.first);
  }
  for (size_t i = 0; i < vocab.words_.size(); ++i)
    vocab.ids_[vocab.words_[i]] = static_cast<int64_t>(i);
  return vocab;
}

int64_t Vocabulary::id(const std::string& word) const {
  auto it = ids_.find(word);
  return it == ids_.end() ? 0 : it->second;
}

TextCorpus make_corpus(const std::vector<Verse>& verses, int64_t max_vocab) {
  std::vector<std::vector<std::string>> tokens;
  tokens.reserve(verses.size());
  std::vector<std::string> splits = split_of_verses(verses);
  std::vector<std::vector<std::string>> train_tokens;
  for (size_t i = 0; i < verses.size(); ++i) {
    tokens.push_back(tokenize(verses[i].text));
    if (splits[i] == "train") train_tokens.push_back(tokens.back());
  }
  DIFFQ_CHECK(!train_tokens.empty(), "the text has no verse in the train split");
  TextCorpus corpus;
  corpus.vocab = Vocabulary::build(train_tokens, max_vocab);
  int64_t unk = 0;
  for (size_t i = 0; i < verses.size(); ++i) {
    auto& out = splits[i] == "train" ? corpus.train : splits[i] == "valid" ? corpus.valid : corpus.test;
    for (const auto& w : tokens[i]) {
      const int64_t id = corpus.vocab.id(w);
      out.push_back(id);
      if (splits[i] == "test" && id == 0) ++unk;
    }
    out.push_back(1);
  }
  corpus.test_unk_rate = corpus.test.empty() ? 0.0 : double(unk) / double(corpus.test.size());
  return corpus;
}

}  // namespace data
}  // namespace diffq
