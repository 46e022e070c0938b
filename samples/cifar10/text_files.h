// Small text files written whole and atomically: metrics, plots and checkpoint sidecars are
// either their old contents or the complete new ones, never half written.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace cifar10 {

// Writes text to path through a temporary file beside it, then renames it into place.
// Creates missing parent folders. Throws std::runtime_error naming the file and the reason.
void write_text_file(const std::filesystem::path& path, std::string_view text);

// The whole file; throws std::runtime_error naming it when it cannot be read.
std::string read_text_file(const std::filesystem::path& path);

}  // namespace cifar10
