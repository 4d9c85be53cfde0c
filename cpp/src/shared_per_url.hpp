// shared_per_url: one object per URL in a process, for the stores opened from broker URLs (rate
// limit stores, response caches, film stores), so that every user of one URL shares its
// connections. Objects are held weakly: the last user's release closes them.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

namespace cinejobs::detail {

// shared_per_url returns the live T opened for `url`, or the one `open(url)` makes now. Each T
// has its own registry; `open` runs under its lock, so one URL is never opened twice at once.
template <class T, class Open>
std::shared_ptr<T> shared_per_url(std::string_view url, Open&& open) {
  static std::mutex mutex;
  static std::map<std::string, std::weak_ptr<T>, std::less<>> opened;
  std::lock_guard lock(mutex);
  if (auto it = opened.find(url); it != opened.end()) {
    if (auto live = it->second.lock()) return live;
  }
  std::shared_ptr<T> made = open(url);
  opened[std::string(url)] = made;
  return made;
}

}  // namespace cinejobs::detail
