// meterpipe-upload: the journals of acquire and actuate into InfluxDB or daily files
// (upload/worker_upload.h; docs/DURABILITY.md). This file only wires.
#include "bus/worker.h"
#include "upload/worker_upload.h"

int main(int argc, char** argv) {
  mp::Worker w(argc, argv, "upload");
  mp::upload::UploadWorker upload(w);
  return upload.run();
}
