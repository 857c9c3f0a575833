# `shardlm tokenizer train|encode|decode|info|convert` end to end: train on a
# small corpus, encode a text, decode the ids back to the same text, read info,
# convert to tokenizer.json and encode the same ids with it.
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK}/corpus)
set(line "the tokenizer merges frequent pairs of bytes into tokens, the loader reads shards.\n")
string(REPEAT "${line}" 200 body)
file(WRITE ${WORK}/corpus/a.txt "${body}")
file(WRITE ${WORK}/corpus/b.txt "Hello world! Hello tokens. 世界 🌍\n")

function(run_ok out_var)
  execute_process(COMMAND ${SHARDLM} ${ARGN} OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "shardlm ${ARGN} failed (${rc}):\n${out}\n${err}")
  endif()
  set(${out_var} "${out}" PARENT_SCOPE)
endfunction()

run_ok(out tokenizer train --input ${WORK}/corpus --vocab-size 300 --out ${WORK}/tok.json
       --hf-out ${WORK}/tokenizer.json --no-progress)
if(NOT out MATCHES "trained 300 tokens")
  message(FATAL_ERROR "unexpected train output:\n${out}")
endif()

set(text "the tokenizer reads 世界 <|endoftext|>")
run_ok(ids tokenizer encode --tokenizer ${WORK}/tok.json --text "${text}" --allow-special)
string(STRIP "${ids}" ids)
if(NOT ids MATCHES "^[0-9 ]+ 3$")  # ends with the EOS token, id 3
  message(FATAL_ERROR "unexpected ids: '${ids}'")
endif()
run_ok(back tokenizer decode --tokenizer ${WORK}/tok.json --ids "${ids}")
if(NOT back STREQUAL text)
  message(FATAL_ERROR "decode gave '${back}', expected '${text}'")
endif()

run_ok(info tokenizer info --tokenizer ${WORK}/tok.json)
foreach(want "vocab_size +300" "kind +merges \\(40 merges\\)" "pattern +gpt2" "<\\|endoftext\\|>  \\(eos\\)")
  if(NOT info MATCHES "${want}")
    message(FATAL_ERROR "info lacks '${want}':\n${info}")
  endif()
endforeach()

run_ok(hf_ids tokenizer encode --tokenizer ${WORK}/tokenizer.json --text "${text}" --allow-special)
string(STRIP "${hf_ids}" hf_ids)
if(NOT hf_ids STREQUAL ids)
  message(FATAL_ERROR "tokenizer.json gives '${hf_ids}', shardlm JSON gives '${ids}'")
endif()

# A bad id is an error that names it.
execute_process(COMMAND ${SHARDLM} tokenizer decode --tokenizer ${WORK}/tok.json --ids "1 99999"
                ERROR_VARIABLE err RESULT_VARIABLE rc)
if(rc EQUAL 0 OR NOT err MATCHES "token id 99999")
  message(FATAL_ERROR "decoding an unknown id: rc ${rc}, '${err}'")
endif()
message(STATUS "ok: ${ids}")
