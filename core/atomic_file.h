// Atomic replacement of a file (checkpoints, training state): the new contents go to a
// temporary file in the target's folder, which is flushed, synced and renamed over the
// target, and the folder is synced. A reader, or the machine after a crash, sees either the
// old file or the complete new one, never a mixture. Private to the library; POSIX only.
//
//   AtomicFileWriter file(path);      // creates ".<name>.tmp.<pid>.<n>" beside path
//   file.write(header_bytes);
//   file.write(data_bytes);
//   file.commit();                    // only now does path change
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>
#include <string>

namespace strata::detail {

class AtomicFileWriter {
 public:
  // Creates the temporary file (mode 0666 less the umask, like any new file). Throws IoError
  // naming target, the temporary and the system's reason (missing folder, permissions).
  explicit AtomicFileWriter(std::filesystem::path target);
  // Removes the temporary file unless commit() succeeded: an abandoned write leaves nothing.
  ~AtomicFileWriter();

  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  // Appends bytes to the temporary file. On failure (disk full, file too large) removes the
  // temporary and throws IoError; the target is untouched.
  void write(std::span<const std::byte> bytes);
  // Syncs and closes the temporary file, renames it over the target, then syncs the folder
  // so the rename survives a crash. On failure before the rename, removes the temporary and
  // throws IoError with the target untouched. A failure to sync the folder after the rename
  // only logs a warning: the new file is complete and in place, only its durability is in
  // doubt (after a crash one would find the old file, itself complete).
  void commit();

  const std::filesystem::path& target() const noexcept { return target_; }
  const std::filesystem::path& temporary_path() const noexcept { return temporary_; }

 private:
  // Closes and removes the temporary file, then throws IoError: "cannot write '<target>':
  // <step> failed: <the system's reason> (temporary file '<temporary>', removed); ...".
  [[noreturn]] void fail(const std::string& step, int error);
  void discard() noexcept;

  std::filesystem::path target_;
  std::filesystem::path temporary_;
  int fd_ = -1;
  bool finished_ = false;  // committed, or discarded after a failure
};

}  // namespace strata::detail
