// AtomicFileWriter: a committed write replaces the target whole; every failure (missing
// folder, permissions, a write that runs out of room, a rename that cannot happen) and every
// abandoned write leaves the previous file intact and no temporary file behind.
#include "core/atomic_file.h"

#include <unistd.h>

#include <cstddef>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "strata/core/errors.h"
#include "tests/core/safetensors_test_support.h"

namespace strata {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using ::testing::ThrowsMessage;
using detail::AtomicFileWriter;
using testing::TemporaryFolder;

std::span<const std::byte> bytes_of(const std::string& text) { return std::as_bytes(std::span(text)); }

void write_atomically(const std::filesystem::path& target, const std::string& contents) {
  AtomicFileWriter file(target);
  file.write(bytes_of(contents));
  file.commit();
}

TEST(AtomicFileTest, WritesANewFileAndLeavesNoTemporary) {
  TemporaryFolder folder;
  write_atomically(folder / "state.bin", "hello");
  EXPECT_EQ(testing::read_file(folder / "state.bin"), "hello");
  EXPECT_THAT(folder.names(), ElementsAre("state.bin"));
}

TEST(AtomicFileTest, ReplacesAnExistingFileWhole) {
  TemporaryFolder folder;
  testing::write_file(folder / "state.bin", std::string(1000, 'x'));
  write_atomically(folder / "state.bin", "short");
  EXPECT_EQ(testing::read_file(folder / "state.bin"), "short");
  EXPECT_THAT(folder.names(), ElementsAre("state.bin"));
}

TEST(AtomicFileTest, WritesInPiecesToAHiddenTemporaryBesideTheTarget) {
  TemporaryFolder folder;
  testing::write_file(folder / "state.bin", "old");
  AtomicFileWriter file(folder / "state.bin");
  EXPECT_EQ(file.temporary_path().parent_path(), folder.path());
  EXPECT_THAT(file.temporary_path().filename().string(), StartsWith(".state.bin.tmp."));
  file.write(bytes_of("new "));
  file.write(bytes_of(""));
  file.write(bytes_of("contents"));
  EXPECT_EQ(testing::read_file(folder / "state.bin"), "old") << "the target must not change before commit";
  file.commit();
  EXPECT_EQ(testing::read_file(folder / "state.bin"), "new contents");
  EXPECT_THAT(folder.names(), ElementsAre("state.bin"));
}

TEST(AtomicFileTest, AnAbandonedWriteRemovesItsTemporary) {
  TemporaryFolder folder;
  testing::write_file(folder / "state.bin", "old");
  {
    AtomicFileWriter file(folder / "state.bin");
    file.write(bytes_of("half of the new"));
  }  // e.g. an exception while the caller prepared the rest
  EXPECT_EQ(testing::read_file(folder / "state.bin"), "old");
  EXPECT_THAT(folder.names(), ElementsAre("state.bin"));
}

TEST(AtomicFileTest, AMissingFolderNamesThePathAndTheReason) {
  TemporaryFolder folder;
  const std::filesystem::path target = folder / "no-such-folder" / "state.bin";
  EXPECT_THAT([&] { AtomicFileWriter file(target); },
              ThrowsMessage<IoError>(AllOf(HasSubstr(target.string()), HasSubstr("creating the temporary file"),
                                           HasSubstr("No such file or directory"))));
  EXPECT_THAT(folder.names(), ElementsAre());
}

TEST(AtomicFileTest, AFailedRenameKeepsTheTargetAndRemovesTheTemporary) {
  TemporaryFolder folder;
  // A folder in the target's place: the data is written and synced, then rename() fails.
  std::filesystem::create_directory(folder / "state.bin");
  testing::write_file(folder / "state.bin" / "inside", "kept");
  AtomicFileWriter file(folder / "state.bin");
  file.write(bytes_of("contents"));
  EXPECT_THAT([&] { file.commit(); },
              ThrowsMessage<IoError>(AllOf(HasSubstr((folder / "state.bin").string()), HasSubstr("rename failed"),
                                           HasSubstr("the target is unchanged"))));
  EXPECT_THAT(folder.names(), ElementsAre("state.bin"));
  EXPECT_EQ(testing::read_file(folder / "state.bin" / "inside"), "kept");
}

TEST(AtomicFileTest, AWriteThatRunsOutOfRoomKeepsThePreviousFile) {
  TemporaryFolder folder;
  testing::write_file(folder / "state.bin", "previous checkpoint");
  const std::string large(64 * 1024, 'n');
  {
    const testing::FileSizeLimit limit(4096);
    AtomicFileWriter file(folder / "state.bin");
    EXPECT_THAT([&] { file.write(bytes_of(large)); },
                ThrowsMessage<IoError>(AllOf(HasSubstr((folder / "state.bin").string()), HasSubstr("write failed"),
                                             HasSubstr("File too large"), HasSubstr("the target is unchanged"))));
    EXPECT_THAT([&] { file.commit(); }, ThrowsMessage<InvalidArgument>(HasSubstr("already committed or abandoned")));
  }
  EXPECT_EQ(testing::read_file(folder / "state.bin"), "previous checkpoint");
  EXPECT_THAT(folder.names(), ElementsAre("state.bin"));
}

TEST(AtomicFileTest, ABareFileNameIsWrittenInTheCurrentFolder) {
  TemporaryFolder folder;
  const std::filesystem::path previous = std::filesystem::current_path();
  std::filesystem::current_path(folder.path());
  try {
    write_atomically("state.bin", "here");
  } catch (...) {
    std::filesystem::current_path(previous);
    throw;
  }
  std::filesystem::current_path(previous);
  EXPECT_EQ(testing::read_file(folder / "state.bin"), "here");
  EXPECT_THAT(folder.names(), ElementsAre("state.bin"));
}

TEST(AtomicFileTest, WritesAfterCommitAreRefused) {
  TemporaryFolder folder;
  AtomicFileWriter file(folder / "state.bin");
  file.commit();
  EXPECT_EQ(testing::read_file(folder / "state.bin"), "");
  EXPECT_THAT([&] { file.write(bytes_of("late")); },
              ThrowsMessage<InvalidArgument>(HasSubstr("already committed or abandoned")));
  EXPECT_THAT([&] { file.commit(); }, ThrowsMessage<InvalidArgument>(HasSubstr("already committed or abandoned")));
}

}  // namespace
}  // namespace strata
