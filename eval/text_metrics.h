// Reference-free text metrics and answer matching. Torch-free.
//
// Diversity of a set of generated texts (over 13a word tokens, so that models
// with different tokenizers compare on the same units):
//   distinct-n  (Li et al. 2016)  unique n-grams / all n-grams, over the whole set
//   repetition-n                  per text: share of its n-grams that already
//                                 occurred earlier in the same text (0 = none)
//   entropy-n   (Zhang et al. 2018) Shannon entropy in bits of the set's n-gram
//                                 distribution
//   self-BLEU   (Zhu et al. 2018, Texygen) mean sentence BLEU of each text
//                                 against all the others (high = alike)
// Answers, as SQuAD's evaluation script (Rajpurkar et al. 2016): lowercase,
// ASCII punctuation removed, the articles a/an/the removed, whitespace
// collapsed; exact match, containment and token F1 against several answers.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "eval/bleu.h"

namespace shardlm::eval {

// ---- diversity ----------------------------------------------------------------------------

// The 13a tokens of `text` (BLEU's tokenizer), used as words by the diversity metrics.
std::vector<std::string> words(std::string_view text);
// Unique n-grams / all n-grams over every text (0 when there is no n-gram).
double distinct_n(const std::vector<std::vector<std::string>>& texts, int n);
// (all - unique) / all n-grams of one text (0 when it has none).
double repetition_rate(const std::vector<std::string>& tokens, int n);
// Entropy (bits) of the n-gram distribution over every text (0 when empty).
double ngram_entropy(const std::vector<std::vector<std::string>>& texts, int n);
// Mean sentence BLEU (0..100) of each text against all others; 0 for < 2 texts.
double self_bleu(const std::vector<std::string>& texts, const BleuConfig& cfg = {});

// Sentences of `text`: cut after ".", "!" or "?" followed by whitespace, and at
// newlines; trimmed, empty ones dropped.
std::vector<std::string> split_sentences(std::string_view text);

// ---- answers ------------------------------------------------------------------------------

// SQuAD's normalize_answer: lower, drop ASCII punctuation, drop a/an/the, collapse spaces.
std::string normalize_answer(std::string_view s);
// 1 when normalize(prediction) equals normalize(one of answers), else 0.
double exact_match(std::string_view prediction, const std::vector<std::string>& answers);
// 1 when the normalized words of one answer occur contiguously in the
// normalized prediction (word-aligned: "cat" is not found in "catalog").
double contains_match(std::string_view prediction, const std::vector<std::string>& answers);
// SQuAD token F1, the maximum over answers (0..1).
double token_f1(std::string_view prediction, const std::vector<std::string>& answers);

}  // namespace shardlm::eval
