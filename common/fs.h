// Files, with one durability rule for everything meterpipe keeps in state_dir
// (docs/ARCHITECTURE.md, "Durability"): a file that must survive a power cut is written to
// a temporary name, fsynced, renamed over the old one, and its directory fsynced.
#pragma once

#include <string>
#include <string_view>

namespace mp::fs {

// The whole file; false (and `error` naming the file) when it cannot be read.
bool read_file(const std::string& path, std::string& out, std::string& error);
// Writes all of `data` to fd (retrying short writes and EINTR); false on error (errno set).
bool write_all(int fd, std::string_view data);
// Replaces `path` by `data` atomically: readers see the old or the new content, never a mix.
// Durable (fsync of the file and of its directory) unless `durable` is false, for files on
// a tmpfs such as run_dir. False with `error` naming the file and the reason.
bool atomic_replace(const std::string& path, std::string_view data, std::string& error,
                    bool durable = true, unsigned mode = 0640);
// Overwrites a small file in place, for state that a restarted worker reads back but that
// need not survive a power cut (process's bus positions in run_dir): open, one pwrite at
// offset 0, close; no new inode, rename or truncation (on ext4 a rename over a file also
// writes its data out: ~0.3 ms of kernel time per save). Atomic against the death of the
// writer (kill -9), as a rename is: the data is padded with spaces to the file's size and
// written with one pwrite of at most one page, which the kernel copies whole or not at all.
// Larger data, or a file that is already larger, goes through atomic_replace (not durable).
// Readers must skip trailing spaces. False with `error` naming the file and the reason.
bool overwrite_in_place(const std::string& path, std::string_view data, std::string& error,
                        unsigned mode = 0640);
// fsync of a directory (after a rename or an unlink in it); false with errno set.
bool fsync_dir(const std::string& dir);
// The directory part of a path ("." when there is none).
std::string dir_of(const std::string& path);

}  // namespace mp::fs
