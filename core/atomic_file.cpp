// AtomicFileWriter on POSIX: open(O_EXCL) a unique temporary beside the target, write(),
// fsync(), close(), rename(), then fsync() the folder.
#include "core/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <system_error>
#include <utility>

#include <fmt/format.h>

#include "core/check.h"
#include "strata/core/errors.h"

namespace strata::detail {
namespace {

std::string error_text(int error) { return std::system_category().message(error); }

// The target's folder: "." for a bare file name.
std::filesystem::path folder_of(const std::filesystem::path& target) {
  std::filesystem::path folder = target.parent_path();
  return folder.empty() ? std::filesystem::path(".") : folder;
}

// ".<name>.tmp.<pid>.<n>": hidden, so that globs such as *.safetensors never pick up a
// half-written file, and unique per process and writer.
std::filesystem::path temporary_name(const std::filesystem::path& target, unsigned attempt) {
  static std::atomic<unsigned> counter{0};
  const unsigned serial = counter.fetch_add(1, std::memory_order_relaxed);
  return target.parent_path() /
         fmt::format(".{}.tmp.{}.{}.{}", target.filename().string(), ::getpid(), serial, attempt);
}

}  // namespace

AtomicFileWriter::AtomicFileWriter(std::filesystem::path target) : target_(std::move(target)) {
  STRATA_CHECK(target_.has_filename(), "AtomicFileWriter: '{}' does not name a file", target_.string());
  // O_EXCL: never write into a file someone else created; a clash (another writer of the
  // same target, a stale temporary) just takes the next name.
  constexpr unsigned kAttempts = 100;
  for (unsigned attempt = 0; attempt < kAttempts; ++attempt) {
    temporary_ = temporary_name(target_, attempt);
    fd_ = ::open(temporary_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd_ >= 0) return;
    if (errno != EEXIST) break;
  }
  const int error = errno;
  finished_ = true;  // nothing to remove
  throw IoError(fmt::format("cannot write '{}': creating the temporary file '{}' failed: {}", target_.string(),
                            temporary_.string(), error_text(error)));
}

AtomicFileWriter::~AtomicFileWriter() {
  if (!finished_) discard();
}

void AtomicFileWriter::write(std::span<const std::byte> bytes) {
  STRATA_CHECK(!finished_, "AtomicFileWriter::write: '{}' was already committed or abandoned", target_.string());
  while (!bytes.empty()) {
    const ssize_t written = ::write(fd_, bytes.data(), bytes.size());
    if (written < 0) {
      if (errno == EINTR) continue;
      fail("write", errno);
    }
    bytes = bytes.subspan(static_cast<std::size_t>(written));
  }
}

void AtomicFileWriter::commit() {
  STRATA_CHECK(!finished_, "AtomicFileWriter::commit: '{}' was already committed or abandoned", target_.string());
  if (::fsync(fd_) != 0) fail("fsync", errno);
  const int fd = std::exchange(fd_, -1);
  // A close error can report a write that failed late (NFS, quotas): the data is not safe.
  if (::close(fd) != 0) fail("close", errno);
  if (::rename(temporary_.c_str(), target_.c_str()) != 0) fail("rename", errno);
  finished_ = true;

  const std::filesystem::path folder = folder_of(target_);
  const int folder_fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  // EINVAL: the file system cannot sync folders (some network and virtual ones).
  if (folder_fd < 0 || (::fsync(folder_fd) != 0 && errno != EINVAL)) {
    const int error = errno;
    log_warning(fmt::format("wrote '{}', but syncing its folder '{}' failed ({}): the rename may not survive a crash",
                            target_.string(), folder.string(), error_text(error)));
  }
  if (folder_fd >= 0) ::close(folder_fd);
}

void AtomicFileWriter::fail(const std::string& step, int error) {
  discard();
  throw IoError(fmt::format("cannot write '{}': {} failed: {} (temporary file '{}', removed); the target is unchanged",
                            target_.string(), step, error_text(error), temporary_.string()));
}

void AtomicFileWriter::discard() noexcept {
  finished_ = true;
  if (fd_ >= 0) ::close(std::exchange(fd_, -1));
  if (::unlink(temporary_.c_str()) != 0 && errno != ENOENT) {
    const int error = errno;
    log_warning(fmt::format("could not remove the temporary file '{}': {}", temporary_.string(), error_text(error)));
  }
}

}  // namespace strata::detail
