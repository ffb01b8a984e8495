// Fault injection for crash-safety tests. Every state-changing step of the updater calls
// fault::point(). With OSUP_FAULT_AT=N in the environment, the Nth call ends the process at
// once with _exit(97) — no destructors, no cleanup, as a power cut looks to the tool — and
// OSUP_FAULT_LOG=FILE appends the name of every point reached, so a test knows how many exist.
#pragma once

namespace osup::fault {

void point(const char* name);

}  // namespace osup::fault
