// Fuzz target eval_jsonl: JSON Lines as `shardlm eval rate` and the reports
// read them: read_jsonl (strict and tolerating a torn tail), samples.jsonl
// through read_rating_items and a scripted rating session (answers appended
// to a ratings file that starts as a copy of the input, so resuming over
// damaged ratings is covered), and ratings.jsonl through summarize_ratings.
// Only core::Error may escape, naming the file.
#include <sstream>
#include <string>

#include "eval/jsonl.h"
#include "eval/ratings.h"
#include "fuzz/fuzz_target.h"

using namespace shardlm;

SHARDLM_FUZZ_TARGET(eval_jsonl) {
  static const bool init = [] {
    fuzz::quiet_logs();
    return true;
  }();
  (void)init;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::string path = fuzz::scratch_file("samples.jsonl", input);

  fuzz::expect_errors([&] { eval::read_jsonl(path, true); }, path);
  std::vector<eval::JsonLine> lines;
  if (fuzz::expect_errors([&] { lines = eval::read_jsonl(path); }, path)) {
    eval::BootstrapOptions bs;
    bs.resamples = 20;
    fuzz::expect_errors(
        [&] {
          const eval::RatingSummary s = eval::summarize_ratings(lines, bs);
          (void)s.to_json();
          (void)s.to_markdown();
        },
        path);
  }
  // A session over these samples, appending to ratings that start as the same bytes.
  eval::RatingOptions o;
  o.samples = path;
  o.out = fuzz::scratch_file("ratings.jsonl", input);
  o.rater = "fuzz";
  o.seed = size;
  std::istringstream answers("3\na\nt\nb\ns\n5\nzz\n1\nq\n");
  std::ostringstream shown;
  fuzz::expect_errors([&] { eval::run_rating_session(o, answers, shown); }, fuzz::scratch_dir());
  return 0;
}
