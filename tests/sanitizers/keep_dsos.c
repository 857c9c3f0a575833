/* Linked into every executable of the sanitizer builds (SHARDLM_ASAN,
 * SHARDLM_FUZZ): dlclose() does nothing, so shared objects stay mapped until
 * the process exits.
 *
 * Why: Open MPI loads its components (mca_*.so) with dlopen and unloads them in
 * MPI_Finalize. LeakSanitizer runs after that, and an allocation made inside an
 * unloaded component has a stack of "<unknown module>" frames that no
 * suppression can match, so every MPI program reported unsuppressible "leaks"
 * (checked with a two-rank MPI_Init/Allreduce/Finalize program built with
 * -fsanitize=address). With the objects kept, the frames name the Open MPI
 * libraries and tests/sanitizers/lsan.supp suppresses them by library; leaks in
 * shardlm's own code are still reported. The same workaround is common in
 * sanitizer setups (google/sanitizers issue 89). */
int dlclose(void *handle) {
  (void)handle;
  return 0;
}
