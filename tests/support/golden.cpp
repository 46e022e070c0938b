#include "tests/support/golden.h"

#include <fstream>
#include <sstream>
#include <stdexcept>

namespace strata::testing {

namespace {
[[noreturn]] void malformed(const std::string& path, int line, const std::string& what) {
  throw std::runtime_error(path + ":" + std::to_string(line) + ": " + what);
}
}  // namespace

const std::vector<std::int64_t>& GoldenCase::ints_of(const std::string& key) const {
  const auto it = ints.find(key);
  if (it == ints.end()) throw std::runtime_error("golden case " + name + " has no int '" + key + "'");
  return it->second;
}

double GoldenCase::float_of(const std::string& key) const {
  const auto it = floats.find(key);
  if (it == floats.end()) throw std::runtime_error("golden case " + name + " has no float '" + key + "'");
  return it->second;
}

const GoldenTensor& GoldenCase::tensor_of(const std::string& key) const {
  const auto it = tensors.find(key);
  if (it == tensors.end()) throw std::runtime_error("golden case " + name + " has no tensor '" + key + "'");
  return it->second;
}

std::vector<GoldenCase> read_golden(const std::string& file_name) {
  const std::string path = std::string(STRATA_GOLDEN_DIR) + "/" + file_name;
  std::ifstream file(path);
  if (!file) throw std::runtime_error("cannot open golden fixture " + path);
  std::vector<GoldenCase> cases;
  GoldenCase* open_case = nullptr;
  std::string text;
  for (int line_number = 1; std::getline(file, text); ++line_number) {
    if (text.empty() || text[0] == '#') continue;
    std::istringstream line(text);
    std::string kind;
    line >> kind;
    if (kind == "case") {
      if (open_case != nullptr) malformed(path, line_number, "case inside case " + open_case->name);
      cases.emplace_back();
      open_case = &cases.back();
      line >> open_case->name;
      continue;
    }
    if (open_case == nullptr) malformed(path, line_number, "'" + kind + "' outside a case");
    std::string key;
    if (kind == "end") {
      open_case = nullptr;
    } else if (kind == "int") {
      line >> key;
      std::vector<std::int64_t> values;
      for (std::int64_t v; line >> v;) values.push_back(v);
      if (values.empty()) malformed(path, line_number, "int " + key + " without values");
      open_case->ints[key] = values;
    } else if (kind == "float") {
      double value = 0;
      if (!(line >> key >> value)) malformed(path, line_number, "bad float line");
      open_case->floats[key] = value;
    } else if (kind == "tensor") {
      line >> key;
      GoldenTensor tensor;
      std::string token;
      std::int64_t count = 1;
      while (line >> token && token != ":") {
        tensor.shape.push_back(std::stoll(token));
        count *= tensor.shape.back();
      }
      if (token != ":") malformed(path, line_number, "tensor " + key + " without ':'");
      for (std::string value; line >> value;) tensor.values.push_back(std::stof(value));
      if (static_cast<std::int64_t>(tensor.values.size()) != count) {
        malformed(path, line_number, "tensor " + key + " has " + std::to_string(tensor.values.size()) +
                                         " values for " + std::to_string(count) + " elements");
      }
      open_case->tensors[key] = std::move(tensor);
    } else {
      malformed(path, line_number, "unknown line kind '" + kind + "'");
    }
  }
  if (open_case != nullptr) malformed(path, 0, "case " + open_case->name + " not closed by 'end'");
  return cases;
}

}  // namespace strata::testing
