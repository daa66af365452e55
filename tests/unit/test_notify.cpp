#include <doctest/doctest.h>

#include "supervisor/notify.h"

using mp::supervisor::notify::kReadyDeadlineNs;
using mp::supervisor::notify::ready_due;
using mp::supervisor::notify::status_line;
using mp::supervisor::notify::WorkerView;

TEST_CASE("notify: READY once every worker is up, or at the deadline") {
  std::vector<WorkerView> w = {{"acquire", true}, {"process", false}};
  CHECK_FALSE(ready_due(w, 0));
  CHECK_FALSE(ready_due(w, kReadyDeadlineNs - 1));
  CHECK(ready_due(w, kReadyDeadlineNs));
  w[1].up = true;
  CHECK(ready_due(w, 0));
}

TEST_CASE("notify: status lines") {
  std::vector<WorkerView> w = {{"acquire", true}, {"process", false}, {"upload", false}};
  CHECK(status_line(w, false) == "starting: 1 of 3 workers up; waiting for process, upload");
  w[1].up = true;
  w[2].restarting = true;
  w[2].restarts = 1;
  CHECK(status_line(w, false) == "starting: 2 of 3 workers up; upload restarting (1 restart)");
  w[2].restarts = 3;
  CHECK(status_line(w, true) == "running: 2 of 3 workers up; upload restarting (3 restarts)");
  w[2] = {"upload", true};
  CHECK(status_line(w, true) == "running: 3 workers up (acquire, process, upload)");
  CHECK(status_line({{"acquire", true}}, true) == "running: 1 worker up (acquire)");
}
