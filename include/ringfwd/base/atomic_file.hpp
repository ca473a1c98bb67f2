#pragma once
// Replacing a file so that a crash at any moment leaves either the old or the new content,
// never a torn mix: the config file rewritten after each D-Bus change (SPEC §4, §7).
#include <string>
#include <string_view>

#include "ringfwd/base/result.hpp"

namespace rf {

// Writes `data` to a new temporary file in the directory of `path` ("<path>.tmp-<unique>",
// created O_EXCL), fsyncs it, gives it the mode and owner of the file it replaces (0640 and
// the caller's owner when there is none), renames it over `path` and fsyncs the directory.
// A symlink at `path` is followed: the file it points to is replaced, the link stays.
// On failure the temporary file is removed, `path` is untouched (unless only the final
// directory fsync failed: then the new file is in place but its durability is not known),
// and the error names the step and the file ("fsync /etc/ringfwd/x.json.tmp-...").
Result<void> write_file_atomic(const std::string& path, std::string_view data);

}  // namespace rf
