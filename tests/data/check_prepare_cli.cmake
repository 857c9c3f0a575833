# `shardlm prepare` end to end through the binary, on 2 MPI ranks: train a small
# tokenizer, prepare three files (one gzip-compressed .jsonl), check the manifest;
# run again (up to date: nothing done); change one file (only it is tokenised
# again); a missing tokenizer is a clear error; `shardlm data inspect` shows the
# documents decoded, packed rows, token ids without a tokenizer, and names a
# wrong tokenizer or split.
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK}/corpus)
foreach(i RANGE 1 60)
  string(APPEND a "Paragraph ${i} of the first file talks about shards and loaders.\n\n")
  string(APPEND b "Paragraph ${i} of the second file talks about tokens and ranks.\n\n")
  string(APPEND c "{\"text\": \"Record ${i} of the third file, a JSON line.\"}\n")
endforeach()
file(WRITE ${WORK}/corpus/a.txt "${a}")
file(WRITE ${WORK}/corpus/b.txt "${b}")
file(WRITE ${WORK}/c.jsonl "${c}")
execute_process(COMMAND gzip -f ${WORK}/c.jsonl)
file(RENAME ${WORK}/c.jsonl.gz ${WORK}/corpus/c.jsonl.gz)

function(run_ok out_var)
  execute_process(COMMAND ${ARGN} OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${ARGN} failed (${rc}):\n${out}\n${err}")
  endif()
  set(${out_var} "${out}\n${err}" PARENT_SCOPE)
endfunction()

run_ok(out ${SHARDLM} tokenizer train --input ${WORK}/corpus/a.txt --vocab-size 300
       --out ${WORK}/tok.json --no-progress)
set(prepare ${MPIEXEC} -n 2 ${SHARDLM} prepare -i ${WORK}/corpus -o ${WORK}/out -t ${WORK}/tok.json
    --no-progress prepare.val_fraction=0.1)
run_ok(out ${prepare})
if(NOT out MATCHES "no manifest yet" OR NOT out MATCHES "tokenised 3 file\\(s\\)")
  message(FATAL_ERROR "unexpected first run:\n${out}")
endif()
file(READ ${WORK}/out/manifest.json manifest)
string(JSON train_docs GET "${manifest}" splits train documents)
string(JSON val_docs GET "${manifest}" splits val documents)
math(EXPR docs "${train_docs} + ${val_docs}")
if(NOT docs EQUAL 180 OR val_docs EQUAL 0)
  message(FATAL_ERROR "expected 180 documents (some in val), got train ${train_docs} val ${val_docs}")
endif()
string(JSON shard GET "${manifest}" splits train shards 0 file)
if(NOT EXISTS ${WORK}/out/${shard})
  message(FATAL_ERROR "shard ${shard} missing")
endif()

run_ok(out ${prepare})
if(NOT out MATCHES "up to date")
  message(FATAL_ERROR "second run should be up to date:\n${out}")
endif()

file(APPEND ${WORK}/corpus/b.txt "One more paragraph at the end of the second file.\n")
run_ok(out ${prepare})
if(NOT out MATCHES "1 input file\\(s\\) new or changed \\(b.txt\\)" OR NOT out MATCHES "tokenised 1 file")
  message(FATAL_ERROR "expected only b.txt to be tokenised again:\n${out}")
endif()

execute_process(COMMAND ${SHARDLM} prepare -i ${WORK}/corpus -o ${WORK}/out2
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(rc EQUAL 0 OR NOT err MATCHES "prepare.tokenizer")
  message(FATAL_ERROR "a missing tokenizer should fail naming prepare.tokenizer:\n${out}\n${err}")
endif()

# ---- shardlm data inspect -------------------------------------------------------------
function(run_fails out_var)
  execute_process(COMMAND ${ARGN} OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
  if(rc EQUAL 0)
    message(FATAL_ERROR "${ARGN} should fail:\n${out}\n${err}")
  endif()
  set(${out_var} "${out}\n${err}" PARENT_SCOPE)
endfunction()
set(inspect ${SHARDLM} data inspect ${WORK}/out)
file(READ ${WORK}/out/manifest.json manifest)
string(JSON train_docs GET "${manifest}" splits train documents)
run_ok(out ${inspect} --docs 2 --tokenizer ${WORK}/tok.json)
if(NOT out MATCHES "train +[0-9]+ +${train_docs} +1\n"
   OR NOT out MATCHES "--- train document 0 of ${train_docs} \\(train-00000.h5 #0, [0-9]+ tokens\\)\nParagraph [0-9]+ of the first file talks about shards and loaders.<\\|endoftext\\|>\n"
   OR NOT out MATCHES "--- train document 1 of" OR out MATCHES "--- train document 2 of"
   OR NOT out MATCHES "cleaning +181 documents read, 181 kept")
  message(FATAL_ERROR "data inspect: unexpected summary or documents:\n${out}")
endif()
run_ok(out ${inspect} --docs 1)  # no tokenizer.json beside the data: token ids
if(NOT out MATCHES "no tokenizer" OR NOT out MATCHES "ids: [0-9]+ [0-9]+")
  message(FATAL_ERROR "data inspect without a tokenizer should print ids:\n${out}")
endif()
file(COPY_FILE ${WORK}/tok.json ${WORK}/tokenizer.json)  # in the data's parent: found
run_ok(out ${inspect} --split val --docs 0 --rows 2 --seq-len 16 --first 1)
if(NOT out MATCHES "decoded by +[^\n]*tokenizer.json" OR NOT out MATCHES "--- row 1: tokens \\[16, 33\\)"
   OR NOT out MATCHES "--- row 2: tokens \\[32, 49\\)" OR out MATCHES "--- row 0:"
   OR out MATCHES "ids: ")
  message(FATAL_ERROR "data inspect --rows: unexpected output:\n${out}")
endif()
run_ok(out ${SHARDLM} tokenizer train --input ${WORK}/corpus/b.txt --vocab-size 280
       --out ${WORK}/other.json --no-progress)
run_fails(out ${inspect} --tokenizer ${WORK}/other.json)
if(NOT out MATCHES "prepared with tokenizer")
  message(FATAL_ERROR "data inspect with another tokenizer should name the mismatch:\n${out}")
endif()
run_fails(out ${inspect} --split dev)
if(NOT out MATCHES "no split 'dev'")
  message(FATAL_ERROR "data inspect --split dev should name the splits:\n${out}")
endif()
message(STATUS "ok")
