// mountinfo parsing on kernel-format text; sysfs walks on real loop devices with a GPT, and
// the device-mapper stacking walk on a fake sysfs tree (no device-mapper on the test host).
#include "base/block_device.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "base/error.h"
#include "base/process.h"
#include "tests/support/test_support.h"

using namespace osup;
using namespace osup::blockdev;
namespace fs = std::filesystem;

namespace {

// Lines as the kernel writes them (proc(5)): optional fields, a bind mount of a
// subdirectory, \040-escaped spaces in the mount point and source, a line that is cut short.
constexpr const char* kFixture =
    "22 1 253:0 / / ro,relatime shared:1 - ext4 /dev/mapper/root ro\n"
    "25 22 8:1 / /boot/efi rw,relatime shared:5 master:2 - vfat /dev/sda1 rw,fmask=0022\n"
    "26 22 8:6 / /var rw,relatime - ext4 /dev/sda6 rw\n"
    "27 26 8:6 /lib/docker /srv/docker\\040data rw,relatime shared:7 - ext4 /dev/sda6 rw\n"
    "28 22 0:45 / /mnt/my\\040usb\\134stick rw - vfat /dev/disk/by-label/MY\\040STICK rw\n"
    "29 22 8:17 / /cut\n"
    "30 22 8:x / /bad rw - ext4 /dev/sdb1 rw\n"
    "31 22 8:33 / /no-separator rw\n";

}  // namespace

TEST_CASE("mountinfo parses optional fields, bind mounts and escaped paths", "[unit]") {
  const std::vector<Mount> m = parse_mountinfo(kFixture);
  REQUIRE(m.size() == 7);  // "30 ... 8:x" is skipped; a line with five fields is enough
  CHECK(m[0].device == makedev(253, 0));
  CHECK(m[0].mount_point == "/");
  CHECK(m[0].fs_type == "ext4");
  CHECK(m[0].source == "/dev/mapper/root");

  CHECK(m[1].device == makedev(8, 1));
  CHECK(m[1].mount_point == "/boot/efi");
  CHECK(m[1].fs_type == "vfat");  // after two optional fields
  CHECK(m[1].source == "/dev/sda1");

  CHECK(m[2].fs_type == "ext4");  // no optional fields at all
  // The bind mount shows a subdirectory of the same file system.
  CHECK(m[3].device == makedev(8, 6));
  CHECK(m[3].root == "/lib/docker");
  CHECK(m[3].mount_point == "/srv/docker data");

  CHECK(m[4].device == makedev(0, 45));
  CHECK(m[4].mount_point == "/mnt/my usb\\stick");
  CHECK(m[4].source == "/dev/disk/by-label/MY STICK");

  CHECK(m[5].mount_point == "/cut");
  CHECK(m[5].fs_type.empty());
  CHECK(m[6].device == makedev(8, 33));
  CHECK(m[6].fs_type.empty());

  // The first mount wins: the file system itself, not the bind mount after it.
  const auto var = find_mount(m, {makedev(8, 6)});
  REQUIRE(var);
  CHECK(var->mount_point == "/var");
  CHECK(var->root == "/");
  CHECK_FALSE(find_mount(m, {makedev(8, 2), makedev(8, 3)}));
  CHECK(find_mount(m, {makedev(8, 2), makedev(8, 1)})->mount_point == "/boot/efi");

  CHECK(parse_mountinfo("").empty());
  CHECK(read_mountinfo("/nonexistent/mountinfo").empty());
  // This process's own table always has "/".
  const std::vector<Mount> self = read_mountinfo();
  CHECK(std::any_of(self.begin(), self.end(), [](const Mount& x) { return x.mount_point == "/"; }));
}

TEST_CASE("device numbers parse strictly", "[unit]") {
  CHECK(parse_devno("8:1") == makedev(8, 1));
  CHECK(parse_devno("259:12\n") == makedev(259, 12));
  CHECK(devno_string(makedev(259, 12)) == "259:12");
  for (const char* bad : {"", "8", "8:", ":1", "8:1x", "8 :1", "-1:2", "a:b"})
    CHECK_FALSE(parse_devno(bad));
  CHECK_THROWS_WITH(device_of_path("/nonexistent/x"),
                    "stat /nonexistent/x: No such file or directory");
}

namespace {

// A sysfs tree shaped like the kernel's: devices under devices/, dev/block/MAJ:MIN and
// class/block/NAME as relative links, partitions inside their disk's directory, "slaves" and
// "holders" linking stacked devices.
class FakeSysfs {
 public:
  explicit FakeSysfs(const std::string& root) : root_(root) {
    fs::create_directories(root_ / "dev/block");
    fs::create_directories(root_ / "class/block");
  }
  const fs::path& root() const { return root_; }

  // Adds a device at devices/DIR (a partition inside its disk's directory).
  void add(const std::string& dir, dev_t dev, std::optional<int> partition = std::nullopt) {
    const fs::path d = root_ / "devices" / dir;
    fs::create_directories(d / "holders");
    fs::create_directories(d / "slaves");
    std::ofstream(d / "dev") << devno_string(dev) << "\n";
    if (partition) std::ofstream(d / "partition") << *partition << "\n";
    fs::create_directory_symlink(fs::path("../../devices") / dir,
                                 root_ / "dev/block" / devno_string(dev));
    fs::create_directory_symlink(fs::path("../../devices") / dir,
                                 root_ / "class/block" / d.filename());
  }
  // LOWER is used by UPPER (dm table entry): UPPER/slaves/LOWER and LOWER/holders/UPPER.
  void stack(const std::string& upper_dir, const std::string& lower_dir) {
    const fs::path up = root_ / "devices" / upper_dir, low = root_ / "devices" / lower_dir;
    fs::create_directory_symlink(fs::relative(low, up / "slaves"), up / "slaves" / low.filename());
    fs::create_directory_symlink(fs::relative(up, low / "holders"),
                                 low / "holders" / up.filename());
  }

 private:
  fs::path root_;
};

}  // namespace

TEST_CASE("sysfs walk follows dm slaves to partitions and holders back up", "[unit]") {
  test::TempDir dir;
  FakeSysfs sys(dir / "sys");
  const dev_t vda = makedev(253, 0), vda1 = makedev(253, 1), vda2 = makedev(253, 2),
              vda3 = makedev(253, 3), vdb = makedev(253, 16), dm0 = makedev(252, 0),
              dm1 = makedev(252, 1);
  const std::string disk = "pci0000:00/virtio1/block/vda";
  sys.add(disk, vda);
  sys.add(disk + "/vda1", vda1, 1);
  // Partition 3 first: the walk must not depend on the order the directory lists entries in.
  sys.add(disk + "/vda3", vda3, 3);
  sys.add(disk + "/vda2", vda2, 2);
  sys.add("pci0000:00/virtio2/block/vdb", vdb);
  sys.add("virtual/block/dm-0", dm0);
  sys.add("virtual/block/dm-1", dm1);
  sys.stack("virtual/block/dm-0", disk + "/vda3");  // dm-verity: hash device
  sys.stack("virtual/block/dm-0", disk + "/vda2");  // dm-verity: data device
  sys.stack("virtual/block/dm-1", "virtual/block/dm-0");
  const fs::path& root = sys.root();

  CHECK(sysfs_name(vda2, root) == "vda2");
  CHECK(sysfs_name(dm1, root) == "dm-1");
  CHECK_FALSE(sysfs_name(makedev(8, 0), root));
  CHECK(device_named("vda", root) == vda);
  CHECK_FALSE(device_named("sdz", root));

  CHECK(partition_number(vda2, root) == 2);
  CHECK_FALSE(partition_number(vda, root));
  CHECK_FALSE(partition_number(dm0, root));
  CHECK(whole_disk(vda3, root) == vda);
  CHECK(whole_disk(vda, root) == vda);
  CHECK(whole_disk(dm0, root) == dm0);
  CHECK(whole_disk(makedev(8, 0), root) == makedev(8, 0));  // unknown to sysfs: itself
  CHECK(partition_of(vda, 3, root) == vda3);
  CHECK_FALSE(partition_of(vda, 4, root));
  CHECK_FALSE(partition_of(makedev(8, 0), 1, root));

  // Two levels of stacking down to both partitions under dm-verity, data partition first.
  CHECK(underlying_devices(dm1, root) == std::set<dev_t>{vda2, vda3});
  CHECK(underlying_devices(vdb, root) == std::set<dev_t>{vdb});
  CHECK(underlying_devices(makedev(8, 0), root) == std::set<dev_t>{makedev(8, 0)});

  // The disk, its partitions and what is stacked on them; not the other disk.
  CHECK(devices_using(vda, root) == std::set<dev_t>{vda, vda1, vda2, vda3, dm0, dm1});
  CHECK(devices_using(vda1, root) == std::set<dev_t>{vda1});
  CHECK(devices_using(vdb, root) == std::set<dev_t>{vdb});

  const std::vector<Mount> mounts = parse_mountinfo(
      "1 0 253:16 / /other rw - ext4 /dev/vdb rw\n"
      "2 0 252:1 / / ro - ext4 /dev/mapper/root ro\n");
  const auto in_use = mount_in_use(vda, mounts, root);
  REQUIRE(in_use);
  CHECK(in_use->mount_point == "/");
  CHECK(in_use->device == dm1);
  CHECK(mount_in_use(vdb, mounts, root)->mount_point == "/other");
  CHECK_FALSE(mount_in_use(vda1, mounts, root));
}

namespace {

// A loop device with partitions over a sparse file, always detached again.
struct PartitionedLoop {
  std::string dev;
  explicit PartitionedLoop(const std::string& file) {
    const std::string out = run_checked({"losetup", "-P", "--show", "-f", file}).out;
    dev = out.substr(0, out.find('\n'));
    // Kernels built without GPT support (CONFIG_EFI_PARTITION) find no partitions; partx
    // reads the table itself and adds them with BLKPG: real partitions all the same.
    if (!fs::exists("/sys/class/block/" + fs::path(dev).filename().string() + "p1"))
      run_checked({"partx", "--add", dev});
  }
  ~PartitionedLoop() { (void)run({"losetup", "-d", dev}); }
  PartitionedLoop(const PartitionedLoop&) = delete;
  PartitionedLoop& operator=(const PartitionedLoop&) = delete;

  // /dev/loopNpM; devtmpfs creates the node shortly after the kernel scans the table.
  [[nodiscard]] std::string partition(int n) const {
    std::string p = dev + "p" + std::to_string(n);
    for (int i = 0; i < 100 && !fs::exists(p); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    return p;
  }
};

dev_t rdev(const std::string& node) {
  struct stat st {};
  REQUIRE(::stat(node.c_str(), &st) == 0);
  REQUIRE(S_ISBLK(st.st_mode));
  return st.st_rdev;
}

}  // namespace

TEST_CASE("real loop device: partitions, parent disk and mounted detection", "[unit]") {
  if (::geteuid() != 0 || !find_tool("losetup") || !find_tool("sfdisk")) {
    WARN("skipped: loop devices need root, losetup and sfdisk");
    return;
  }
  test::TempDir dir;
  const std::string file = dir / "disk.img";
  { std::ofstream(file).close(); }
  REQUIRE(::truncate(file.c_str(), 64 << 20) == 0);
  run_checked(
      {"sfdisk", "--quiet", file},
      {.stdin_data = "label: gpt\nsize=16MiB, type=L, name=one\nsize=16MiB, type=L, name=two\n"});
  PartitionedLoop loop(file);
  const dev_t disk = rdev(loop.dev), p1 = rdev(loop.partition(1)), p2 = rdev(loop.partition(2));
  const std::string name = fs::path(loop.dev).filename();

  CHECK(sysfs_name(disk) == name);
  CHECK(sysfs_name(p2) == name + "p2");
  CHECK(device_named(name) == disk);
  CHECK(partition_number(p1) == 1);
  CHECK(partition_number(p2) == 2);
  CHECK_FALSE(partition_number(disk));
  CHECK(whole_disk(p2) == disk);
  CHECK(whole_disk(disk) == disk);
  CHECK(partition_of(disk, 2) == p2);
  CHECK_FALSE(partition_of(disk, 3));
  CHECK(underlying_devices(p1) == std::set<dev_t>{p1});
  CHECK(devices_using(disk) == std::set<dev_t>{disk, p1, p2});
  CHECK_FALSE(mount_in_use(disk, read_mountinfo()));

  run_checked({"mkfs.ext4", "-q", loop.partition(2)});
  const std::string mnt = dir / "mount point";  // the kernel writes it as mount\040point
  fs::create_directory(mnt);
  if (run({"mount", loop.partition(2), mnt}).exit_code != 0) {
    WARN("skipped: mount is not permitted here");
    return;
  }
  struct Unmount {
    std::string dir;
    ~Unmount() { (void)run({"umount", dir}); }
  } unmount{mnt};

  CHECK(device_of_path(mnt) == p2);
  const auto whole = mount_in_use(disk, read_mountinfo());
  REQUIRE(whole);
  CHECK(whole->device == p2);
  CHECK(whole->mount_point == mnt);
  CHECK(whole->fs_type == "ext4");
  CHECK(mount_in_use(p2, read_mountinfo())->mount_point == mnt);
  CHECK_FALSE(mount_in_use(p1, read_mountinfo()));
  CHECK(find_mount(read_mountinfo(), {p2})->root == "/");
}
