// Reboot coordination: at most N machines of a group reboot into a new version at a time.
// A machine takes one of the group's N reboot slots before its new slot becomes the next
// boot, and gives it back once the new boot is marked good (or it is back on the old
// one). Two backends: etcd directly (etcd_reboot_slots.h) and a FleetLock server
// (fleetlock.h); unit tests may put a fake behind this interface.
#pragma once

#include <string>
#include <vector>

namespace osup::fleet {

struct SlotRequest {
  std::string group;    // machines that share the N slots
  std::string machine;  // this machine's id (/etc/machine-id)
  int max = 1;          // N, the number of slots in the group
};

struct SlotAnswer {
  bool held = false;                 // this machine holds a slot now
  int slot = -1;                     // which one, when the backend says (etcd)
  std::vector<std::string> holders;  // who holds the slots, when the backend says
  std::string refusal;               // why not, in the backend's words (FleetLock)
};

class RebootSlots {
 public:
  virtual ~RebootSlots() = default;
  // One try, no waiting: held, or not (all taken). Taking a slot this machine already
  // holds is a success (a rerun after a crash keeps its slot). Throws when the backend
  // cannot be reached; the caller waits and retries (slot_wait.h).
  virtual SlotAnswer try_acquire(const SlotRequest& r) = 0;
  // Gives this machine's slot back; nothing when it holds none.
  virtual void release(const SlotRequest& r) = 0;
  // Who holds slots now (empty when the backend cannot tell, as FleetLock).
  virtual std::vector<std::string> holders(const std::string& group) = 0;
  // Tells the backend the holder is alive (etcd: refreshes the slot's lease); a backend
  // whose slots do not expire does nothing.
  virtual void keep_alive(const SlotRequest&) {}
};

}  // namespace osup::fleet
