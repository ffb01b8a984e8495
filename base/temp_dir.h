// A private directory, removed with everything in it when the object goes away.
#pragma once

#include <string>

namespace osup {

class TempDir {
 public:
  // Under $TMPDIR when set, else under `parent`; the name starts with `prefix`.
  explicit TempDir(const std::string& parent = "/tmp", const std::string& prefix = "osup-");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace osup
