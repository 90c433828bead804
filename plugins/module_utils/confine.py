# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Confinement of the processes that enter a guest: capabilities, no_new_privs, seccomp.

A :class:`Confinement` is built (and validated) in the parent from a guest's settings
(``privileged``, ``capabilities: {drop, add}``, ``no_new_privs``, ``seccomp``); the seccomp
program is compiled there too, to classic BPF, so that :func:`apply` - called in the forked
child just before ``exec`` - does nothing but system calls, in runc's order:

1. drop the bounding set (``PR_CAPBSET_DROP`` for each capability not kept);
2. without ``no_new_privs``, install the filter now, while CAP_SYS_ADMIN is still held;
3. clear the ambient set (``PR_CAP_AMBIENT_CLEAR_ALL``);
4. ``capset``: effective = permitted = the kept set, inheritable empty;
5. ``PR_SET_NO_NEW_PRIVS``;
6. install the seccomp filter LAST (``PR_SET_SECCOMP``, ``SECCOMP_MODE_FILTER``).

The uid stays 0: this is host root joining a guest; root's capabilities after ``exec`` are the
bounding set. No compiled extension and no libseccomp: the filter is generated here from the
kernel's own syscall tables (x86_64 and aarch64). confine_status.py reads back what a running
process has, for namespace_info. docs/confinement.md explains every choice.

Stdlib and ctypes only; no Ansible import.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import struct
from collections import namedtuple
from typing import TYPE_CHECKING

from ansible_collections.linuxns.guests.plugins.module_utils.errors import InvalidInput, KernelError

if TYPE_CHECKING:  # pragma: no cover - type hints only (entering processes do not import the registry for it)
    from ansible_collections.linuxns.guests.plugins.module_utils.registry import GuestRecord

# ---------------------------------------------------------------------------------------
# capabilities (include/uapi/linux/capability.h)
# ---------------------------------------------------------------------------------------
CAP_NAMES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
    "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)  # fmt: skip
CAP_NUMBERS = {name: nr for nr, name in enumerate(CAP_NAMES)}

# The default bounding set of a guest: Docker's default minus CAP_MKNOD and CAP_NET_RAW
# (Podman's choice too), keeping CAP_AUDIT_WRITE (Docker keeps it; sshd/login in a guest
# write audit records). docs/confinement.md has the table against Docker, Podman and LXC.
DEFAULT_CAPABILITIES = (
    "CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_NET_BIND_SERVICE", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT",
)  # fmt: skip

PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

# ---------------------------------------------------------------------------------------
# seccomp (include/uapi/linux/seccomp.h, filter.h, audit.h)
# ---------------------------------------------------------------------------------------
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_KILL_THREAD = 0x00000000
SECCOMP_RET_TRAP = 0x00030000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_LOG = 0x7FFC0000
SECCOMP_RET_ALLOW = 0x7FFF0000
AUDIT_ARCH_X86_64 = 0xC000003E  # EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
AUDIT_ARCH_AARCH64 = 0xC00000B7  # EM_AARCH64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
X32_SYSCALL_BIT = 0x40000000
BPF_MAXINSNS = 4096

# classic BPF opcodes (include/uapi/linux/bpf_common.h)
_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_ALU_AND_K = 0x54  # BPF_ALU | BPF_AND | BPF_K
_JMP_JA = 0x05  # BPF_JMP | BPF_JA
_JMP_JEQ_K = 0x15
_JMP_JGT_K = 0x25
_JMP_JGE_K = 0x35
_RET_K = 0x06
# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]
_OFF_NR = 0
_OFF_ARCH = 4
_OFF_ARGS = 16

# clone flags (include/uapi/linux/sched.h)
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
# Docker's mask (2114060288): every namespace flag that clone() takes. CLONE_NEWTIME shares
# its bit with CSIGNAL in clone(), so it is only in unshare()'s mask.
CLONE_NS_FLAGS = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET

# ---------------------------------------------------------------------------------------
# syscall numbers, generated from the kernel's tables: x86_64 from
# arch/x86/entry/syscalls/syscall_64.tbl (64 and common ABI, via the uapi unistd_64.h of
# linux-libc-dev 6.1), aarch64 from include/uapi/asm-generic/unistd.h with arm64's
# __ARCH_WANT_* set; numbers 451-462 from scripts/syscall.tbl (the same on both, since 424).
# ---------------------------------------------------------------------------------------
_X86_64 = """
read:0 write:1 open:2 close:3 stat:4 fstat:5 lstat:6 poll:7 lseek:8 mmap:9 mprotect:10 munmap:11 brk:12 rt_sigaction:13 rt_sigprocmask:14
rt_sigreturn:15 ioctl:16 pread64:17 pwrite64:18 readv:19 writev:20 access:21 pipe:22 select:23 sched_yield:24 mremap:25 msync:26 mincore:27 madvise:28
shmget:29 shmat:30 shmctl:31 dup:32 dup2:33 pause:34 nanosleep:35 getitimer:36 alarm:37 setitimer:38 getpid:39 sendfile:40 socket:41 connect:42
accept:43 sendto:44 recvfrom:45 sendmsg:46 recvmsg:47 shutdown:48 bind:49 listen:50 getsockname:51 getpeername:52 socketpair:53 setsockopt:54
getsockopt:55 clone:56 fork:57 vfork:58 execve:59 exit:60 wait4:61 kill:62 uname:63 semget:64 semop:65 semctl:66 shmdt:67 msgget:68 msgsnd:69
msgrcv:70 msgctl:71 fcntl:72 flock:73 fsync:74 fdatasync:75 truncate:76 ftruncate:77 getdents:78 getcwd:79 chdir:80 fchdir:81 rename:82 mkdir:83
rmdir:84 creat:85 link:86 unlink:87 symlink:88 readlink:89 chmod:90 fchmod:91 chown:92 fchown:93 lchown:94 umask:95 gettimeofday:96 getrlimit:97
getrusage:98 sysinfo:99 times:100 ptrace:101 getuid:102 syslog:103 getgid:104 setuid:105 setgid:106 geteuid:107 getegid:108 setpgid:109 getppid:110
getpgrp:111 setsid:112 setreuid:113 setregid:114 getgroups:115 setgroups:116 setresuid:117 getresuid:118 setresgid:119 getresgid:120 getpgid:121
setfsuid:122 setfsgid:123 getsid:124 capget:125 capset:126 rt_sigpending:127 rt_sigtimedwait:128 rt_sigqueueinfo:129 rt_sigsuspend:130 sigaltstack:131
utime:132 mknod:133 uselib:134 personality:135 ustat:136 statfs:137 fstatfs:138 sysfs:139 getpriority:140 setpriority:141 sched_setparam:142
sched_getparam:143 sched_setscheduler:144 sched_getscheduler:145 sched_get_priority_max:146 sched_get_priority_min:147 sched_rr_get_interval:148
mlock:149 munlock:150 mlockall:151 munlockall:152 vhangup:153 modify_ldt:154 pivot_root:155 _sysctl:156 prctl:157 arch_prctl:158 adjtimex:159
setrlimit:160 chroot:161 sync:162 acct:163 settimeofday:164 mount:165 umount2:166 swapon:167 swapoff:168 reboot:169 sethostname:170 setdomainname:171
iopl:172 ioperm:173 create_module:174 init_module:175 delete_module:176 get_kernel_syms:177 query_module:178 quotactl:179 nfsservctl:180 getpmsg:181
putpmsg:182 afs_syscall:183 tuxcall:184 security:185 gettid:186 readahead:187 setxattr:188 lsetxattr:189 fsetxattr:190 getxattr:191 lgetxattr:192
fgetxattr:193 listxattr:194 llistxattr:195 flistxattr:196 removexattr:197 lremovexattr:198 fremovexattr:199 tkill:200 time:201 futex:202
sched_setaffinity:203 sched_getaffinity:204 set_thread_area:205 io_setup:206 io_destroy:207 io_getevents:208 io_submit:209 io_cancel:210
get_thread_area:211 lookup_dcookie:212 epoll_create:213 epoll_ctl_old:214 epoll_wait_old:215 remap_file_pages:216 getdents64:217 set_tid_address:218
restart_syscall:219 semtimedop:220 fadvise64:221 timer_create:222 timer_settime:223 timer_gettime:224 timer_getoverrun:225 timer_delete:226
clock_settime:227 clock_gettime:228 clock_getres:229 clock_nanosleep:230 exit_group:231 epoll_wait:232 epoll_ctl:233 tgkill:234 utimes:235 vserver:236
mbind:237 set_mempolicy:238 get_mempolicy:239 mq_open:240 mq_unlink:241 mq_timedsend:242 mq_timedreceive:243 mq_notify:244 mq_getsetattr:245
kexec_load:246 waitid:247 add_key:248 request_key:249 keyctl:250 ioprio_set:251 ioprio_get:252 inotify_init:253 inotify_add_watch:254
inotify_rm_watch:255 migrate_pages:256 openat:257 mkdirat:258 mknodat:259 fchownat:260 futimesat:261 newfstatat:262 unlinkat:263 renameat:264
linkat:265 symlinkat:266 readlinkat:267 fchmodat:268 faccessat:269 pselect6:270 ppoll:271 unshare:272 set_robust_list:273 get_robust_list:274
splice:275 tee:276 sync_file_range:277 vmsplice:278 move_pages:279 utimensat:280 epoll_pwait:281 signalfd:282 timerfd_create:283 eventfd:284
fallocate:285 timerfd_settime:286 timerfd_gettime:287 accept4:288 signalfd4:289 eventfd2:290 epoll_create1:291 dup3:292 pipe2:293 inotify_init1:294
preadv:295 pwritev:296 rt_tgsigqueueinfo:297 perf_event_open:298 recvmmsg:299 fanotify_init:300 fanotify_mark:301 prlimit64:302 name_to_handle_at:303
open_by_handle_at:304 clock_adjtime:305 syncfs:306 sendmmsg:307 setns:308 getcpu:309 process_vm_readv:310 process_vm_writev:311 kcmp:312
finit_module:313 sched_setattr:314 sched_getattr:315 renameat2:316 seccomp:317 getrandom:318 memfd_create:319 kexec_file_load:320 bpf:321 execveat:322
userfaultfd:323 membarrier:324 mlock2:325 copy_file_range:326 preadv2:327 pwritev2:328 pkey_mprotect:329 pkey_alloc:330 pkey_free:331 statx:332
io_pgetevents:333 rseq:334 pidfd_send_signal:424 io_uring_setup:425 io_uring_enter:426 io_uring_register:427 open_tree:428 move_mount:429 fsopen:430
fsconfig:431 fsmount:432 fspick:433 pidfd_open:434 clone3:435 close_range:436 openat2:437 pidfd_getfd:438 faccessat2:439 process_madvise:440
epoll_pwait2:441 mount_setattr:442 quotactl_fd:443 landlock_create_ruleset:444 landlock_add_rule:445 landlock_restrict_self:446 memfd_secret:447
process_mrelease:448 futex_waitv:449 set_mempolicy_home_node:450 cachestat:451 fchmodat2:452 map_shadow_stack:453 futex_wake:454 futex_wait:455
futex_requeue:456 statmount:457 listmount:458 lsm_get_self_attr:459 lsm_set_self_attr:460 lsm_list_modules:461 mseal:462
"""
_AARCH64 = """
io_setup:0 io_destroy:1 io_submit:2 io_cancel:3 io_getevents:4 setxattr:5 lsetxattr:6 fsetxattr:7 getxattr:8 lgetxattr:9 fgetxattr:10 listxattr:11
llistxattr:12 flistxattr:13 removexattr:14 lremovexattr:15 fremovexattr:16 getcwd:17 lookup_dcookie:18 eventfd2:19 epoll_create1:20 epoll_ctl:21
epoll_pwait:22 dup:23 dup3:24 fcntl:25 inotify_init1:26 inotify_add_watch:27 inotify_rm_watch:28 ioctl:29 ioprio_set:30 ioprio_get:31 flock:32
mknodat:33 mkdirat:34 unlinkat:35 symlinkat:36 linkat:37 renameat:38 umount2:39 mount:40 pivot_root:41 nfsservctl:42 statfs:43 fstatfs:44 truncate:45
ftruncate:46 fallocate:47 faccessat:48 chdir:49 fchdir:50 chroot:51 fchmod:52 fchmodat:53 fchownat:54 fchown:55 openat:56 close:57 vhangup:58 pipe2:59
quotactl:60 getdents64:61 lseek:62 read:63 write:64 readv:65 writev:66 pread64:67 pwrite64:68 preadv:69 pwritev:70 sendfile:71 pselect6:72 ppoll:73
signalfd4:74 vmsplice:75 splice:76 tee:77 readlinkat:78 newfstatat:79 fstat:80 sync:81 fsync:82 fdatasync:83 sync_file_range:84 timerfd_create:85
timerfd_settime:86 timerfd_gettime:87 utimensat:88 acct:89 capget:90 capset:91 personality:92 exit:93 exit_group:94 waitid:95 set_tid_address:96
unshare:97 futex:98 set_robust_list:99 get_robust_list:100 nanosleep:101 getitimer:102 setitimer:103 kexec_load:104 init_module:105 delete_module:106
timer_create:107 timer_gettime:108 timer_getoverrun:109 timer_settime:110 timer_delete:111 clock_settime:112 clock_gettime:113 clock_getres:114
clock_nanosleep:115 syslog:116 ptrace:117 sched_setparam:118 sched_setscheduler:119 sched_getscheduler:120 sched_getparam:121 sched_setaffinity:122
sched_getaffinity:123 sched_yield:124 sched_get_priority_max:125 sched_get_priority_min:126 sched_rr_get_interval:127 restart_syscall:128 kill:129
tkill:130 tgkill:131 sigaltstack:132 rt_sigsuspend:133 rt_sigaction:134 rt_sigprocmask:135 rt_sigpending:136 rt_sigtimedwait:137 rt_sigqueueinfo:138
rt_sigreturn:139 setpriority:140 getpriority:141 reboot:142 setregid:143 setgid:144 setreuid:145 setuid:146 setresuid:147 getresuid:148 setresgid:149
getresgid:150 setfsuid:151 setfsgid:152 times:153 setpgid:154 getpgid:155 getsid:156 setsid:157 getgroups:158 setgroups:159 uname:160 sethostname:161
setdomainname:162 getrlimit:163 setrlimit:164 getrusage:165 umask:166 prctl:167 getcpu:168 gettimeofday:169 settimeofday:170 adjtimex:171 getpid:172
getppid:173 getuid:174 geteuid:175 getgid:176 getegid:177 gettid:178 sysinfo:179 mq_open:180 mq_unlink:181 mq_timedsend:182 mq_timedreceive:183
mq_notify:184 mq_getsetattr:185 msgget:186 msgctl:187 msgrcv:188 msgsnd:189 semget:190 semctl:191 semtimedop:192 semop:193 shmget:194 shmctl:195
shmat:196 shmdt:197 socket:198 socketpair:199 bind:200 listen:201 accept:202 connect:203 getsockname:204 getpeername:205 sendto:206 recvfrom:207
setsockopt:208 getsockopt:209 shutdown:210 sendmsg:211 recvmsg:212 readahead:213 brk:214 munmap:215 mremap:216 add_key:217 request_key:218 keyctl:219
clone:220 execve:221 mmap:222 fadvise64:223 swapon:224 swapoff:225 mprotect:226 msync:227 mlock:228 munlock:229 mlockall:230 munlockall:231
mincore:232 madvise:233 remap_file_pages:234 mbind:235 get_mempolicy:236 set_mempolicy:237 migrate_pages:238 move_pages:239 rt_tgsigqueueinfo:240
perf_event_open:241 accept4:242 recvmmsg:243 wait4:260 prlimit64:261 fanotify_init:262 fanotify_mark:263 name_to_handle_at:264 open_by_handle_at:265
clock_adjtime:266 syncfs:267 setns:268 sendmmsg:269 process_vm_readv:270 process_vm_writev:271 kcmp:272 finit_module:273 sched_setattr:274
sched_getattr:275 renameat2:276 seccomp:277 getrandom:278 memfd_create:279 bpf:280 execveat:281 userfaultfd:282 membarrier:283 mlock2:284
copy_file_range:285 preadv2:286 pwritev2:287 pkey_mprotect:288 pkey_alloc:289 pkey_free:290 statx:291 io_pgetevents:292 rseq:293 kexec_file_load:294
pidfd_send_signal:424 io_uring_setup:425 io_uring_enter:426 io_uring_register:427 open_tree:428 move_mount:429 fsopen:430 fsconfig:431 fsmount:432
fspick:433 pidfd_open:434 clone3:435 close_range:436 openat2:437 pidfd_getfd:438 faccessat2:439 process_madvise:440 epoll_pwait2:441 mount_setattr:442
quotactl_fd:443 landlock_create_ruleset:444 landlock_add_rule:445 landlock_restrict_self:446 memfd_secret:447 process_mrelease:448 futex_waitv:449
set_mempolicy_home_node:450 cachestat:451 fchmodat2:452 futex_wake:454 futex_wait:455 futex_requeue:456 statmount:457 listmount:458
lsm_get_self_attr:459 lsm_set_self_attr:460 lsm_list_modules:461 mseal:462
"""

SYSCALLS = {
    "x86_64": {name: int(nr) for name, nr in (item.split(":") for item in _X86_64.split())},
    "aarch64": {name: int(nr) for name, nr in (item.split(":") for item in _AARCH64.split())},
}
AUDIT_ARCH = {"x86_64": AUDIT_ARCH_X86_64, "aarch64": AUDIT_ARCH_AARCH64}
# names by which profiles (Docker's "arches", OCI "architectures") call each machine
ARCH_ALIASES = {
    "x86_64": {"x86_64", "amd64", "SCMP_ARCH_X86_64"},
    "aarch64": {"aarch64", "arm64", "SCMP_ARCH_AARCH64"},
}


def machine() -> str:
    return os.uname().machine


# ---------------------------------------------------------------------------------------
# the default filter: a deny-list (docs/confinement.md gives the reason for each call)
# ---------------------------------------------------------------------------------------
# Always denied with EPERM, whatever capabilities are kept.
DENY_ALWAYS = (
    # kernel replacement and kernel modules (CAP_SYS_BOOT / CAP_SYS_MODULE)
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "create_module", "get_kernel_syms", "query_module",
    # "shocker": open any inode of a host file system by handle (CAP_DAC_READ_SEARCH)
    "open_by_handle_at",
    # the kernel keyring is not namespaced
    "add_key", "request_key", "keyctl",
    # host-wide state: swap, reboot, obsolete or unimplemented interfaces
    "swapon", "swapoff", "reboot", "nfsservctl", "uselib", "ustat", "sysfs", "_sysctl", "lookup_dcookie",
    # kernel-exploit helpers: userfaultfd stretches race windows; io_uring bypasses seccomp per-op filtering
    "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    # NUMA page moves of other processes
    "move_pages", "migrate_pages",
    # x86 port I/O and vm86
    "vm86", "vm86old",
)  # fmt: skip
# Denied unless one of the capabilities is kept (as Docker's profile "includes.caps").
DENY_UNLESS = (
    (("CAP_SYS_ADMIN",), (
        "mount", "umount", "umount2", "pivot_root", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount",
        "open_tree", "mount_setattr", "setns", "fanotify_init", "quotactl", "quotactl_fd", "sethostname",
        "setdomainname",
    )),
    (("CAP_SYS_ADMIN", "CAP_BPF"), ("bpf",)),
    (("CAP_SYS_ADMIN", "CAP_PERFMON"), ("perf_event_open",)),
    (("CAP_SYS_ADMIN", "CAP_SYSLOG"), ("syslog",)),
    (("CAP_SYS_TIME",), ("settimeofday", "clock_settime", "stime")),
    (("CAP_SYS_PACCT",), ("acct",)),
    (("CAP_SYS_RAWIO",), ("iopl", "ioperm")),
)  # fmt: skip
# personality(2) values Docker allows: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32, query
PERSONALITY_ALLOWED = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

_ACTIONS = {
    "SCMP_ACT_ALLOW": SECCOMP_RET_ALLOW,
    "SCMP_ACT_ERRNO": SECCOMP_RET_ERRNO,
    "SCMP_ACT_KILL": SECCOMP_RET_KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": SECCOMP_RET_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": SECCOMP_RET_KILL_PROCESS,
    "SCMP_ACT_TRAP": SECCOMP_RET_TRAP,
    "SCMP_ACT_LOG": SECCOMP_RET_LOG,
}
_REFUSED_ACTIONS = {
    "SCMP_ACT_TRACE": "it needs a ptrace tracer, which a guest's processes do not have",
    "SCMP_ACT_NOTIFY": "it needs a seccomp agent (listenerPath), which is not supported",
}
_OPS = ("SCMP_CMP_EQ", "SCMP_CMP_NE", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_GT", "SCMP_CMP_GE", "SCMP_CMP_LT", "SCMP_CMP_LE")
_U64 = (1 << 64) - 1
MAX_PROFILE_BYTES = 4 * 1024 * 1024


class Rule(namedtuple("Rule", "name action args", defaults=((),))):
    """One seccomp rule for one syscall: ``action`` when every ``args`` comparison holds.

    ``args`` are ``(index, op, value, value_two)``; ``op`` a SCMP_CMP_* name.
    """

    __slots__ = ()  # a named tuple, not a dataclass: importing dataclasses costs 20-60 ms in every entering process


# ---------------------------------------------------------------------------------------
# capability settings
# ---------------------------------------------------------------------------------------
def cap_last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return len(CAP_NAMES) - 1


def cap_name(nr: int) -> str:
    return CAP_NAMES[nr] if nr < len(CAP_NAMES) else "CAP_%d" % nr


def parse_cap(value, where: str, last: int) -> int:
    """``CAP_SYS_ADMIN``, ``sys_admin``, ``SYS_ADMIN`` -> 21; unknown or beyond the kernel's -> InvalidInput."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("%s: a capability name is expected, not %r" % (where, value))
    name = value.strip().upper()
    if not name.startswith("CAP_"):
        name = "CAP_" + name
    nr = CAP_NUMBERS.get(name)
    if nr is None:
        raise InvalidInput("%s: unknown capability '%s'" % (where, value))
    if nr > last:
        raise InvalidInput("%s: capability '%s' is not known to this kernel (cap_last_cap is %d)" % (where, name, last))
    return nr


def _cap_list(value, where: str) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise InvalidInput("%s: a list of capability names is expected, not %r" % (where, value))
    return list(value)


def kept_capabilities(capabilities, last: int | None = None) -> frozenset:
    """The kept set (bounding = effective = permitted) from ``{drop: [...], add: [...]}``.

    ``ALL`` in ``drop`` starts from nothing, in ``add`` from every capability of the kernel; a
    capability both dropped and added by name is refused as ambiguous.
    """
    last = cap_last_cap() if last is None else last
    if capabilities is None:
        capabilities = {}
    if not isinstance(capabilities, dict):
        raise InvalidInput("capabilities: a dict with 'drop' and/or 'add' is expected, not %r" % (capabilities,))
    unknown = sorted(set(capabilities) - {"drop", "add"})
    if unknown:
        raise InvalidInput("capabilities: unknown key(s) %s; only 'drop' and 'add' are supported" % ", ".join(map(repr, unknown)))
    every = frozenset(range(last + 1))
    kept = {CAP_NUMBERS[n] for n in DEFAULT_CAPABILITIES if CAP_NUMBERS[n] <= last}
    named = {}
    for key in ("drop", "add"):
        for i, item in enumerate(_cap_list(capabilities.get(key), "capabilities.%s" % key)):
            where = "capabilities.%s[%d]" % (key, i)
            if isinstance(item, str) and item.strip().upper() in ("ALL", "CAP_ALL"):
                kept = set() if key == "drop" else set(every)
                continue
            nr = parse_cap(item, where, last)
            if nr in named and named[nr][0] != key:
                raise InvalidInput("%s: '%s' is also in %s; a capability is either dropped or added" % (where, cap_name(nr), named[nr][1]))
            named[nr] = (key, where)
    for nr, (key, _where) in named.items():
        if key == "drop":
            kept.discard(nr)
        else:
            kept.add(nr)
    return frozenset(kept)


# ---------------------------------------------------------------------------------------
# seccomp profiles
# ---------------------------------------------------------------------------------------
def _kernel_version() -> tuple:
    out = []
    for part in os.uname().release.split("-")[0].split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit())
        out.append(int(digits or 0))
    return tuple(out)


def _int(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput("%s: an integer is expected, not %r" % (where, value))
    if value < -(1 << 63) or value > _U64:
        raise InvalidInput("%s: %d does not fit in 64 bits" % (where, value))
    return value & _U64


def _action(name, errno_ret, default_errno: int, where: str) -> int:
    if not isinstance(name, str):
        raise InvalidInput("%s: an action name is expected, not %r" % (where, name))
    if name in _REFUSED_ACTIONS:
        raise InvalidInput("%s: action '%s' is not supported: %s" % (where, name, _REFUSED_ACTIONS[name]))
    if name not in _ACTIONS:
        raise InvalidInput("%s: unknown action '%s' (supported: %s)" % (where, name, ", ".join(sorted(_ACTIONS))))
    action = _ACTIONS[name]
    if action == SECCOMP_RET_ERRNO:
        err = default_errno if errno_ret is None else _int(errno_ret, where.rsplit(".", 1)[0] + ".errnoRet")
        if not 0 < err < 4096:
            raise InvalidInput("%s: errnoRet %d is not an errno (1-4095)" % (where, err))
        action |= err
    elif errno_ret is not None:
        raise InvalidInput("%s: errnoRet is only for SCMP_ACT_ERRNO, not '%s'" % (where, name))
    return action


def _applies(rule: dict, where: str, arch: str, kept: frozenset) -> bool:
    """Docker's ``includes``/``excludes`` (caps, arches, minKernel) for this machine and kept set."""
    for key in ("includes", "excludes"):
        cond = rule.get(key) or {}
        if not isinstance(cond, dict):
            raise InvalidInput("%s.%s: a dict is expected" % (where, key))
        unknown = sorted(set(cond) - {"caps", "arches", "minKernel"})
        if unknown:
            raise InvalidInput("%s.%s: unsupported condition(s) %s" % (where, key, ", ".join(unknown)))
        caps = [parse_cap(c, "%s.%s.caps" % (where, key), 63) for c in cond.get("caps") or []]
        arches = cond.get("arches") or []
        if not isinstance(arches, list):
            raise InvalidInput("%s.%s.arches: a list is expected" % (where, key))
        on_arch = bool(ARCH_ALIASES[arch] & set(arches))
        min_kernel = cond.get("minKernel")
        if min_kernel is not None:
            try:
                wanted = tuple(int(p) for p in str(min_kernel).split("."))
            except ValueError:
                raise InvalidInput("%s.%s.minKernel: a version like '4.8' is expected, not %r" % (where, key, min_kernel))
        if key == "includes":
            if caps and not all(c in kept for c in caps):
                return False
            if arches and not on_arch:
                return False
            if min_kernel is not None and _kernel_version() < wanted:
                return False
        else:
            if caps and any(c in kept for c in caps):
                return False
            if arches and on_arch:
                return False
            if min_kernel is not None and _kernel_version() >= wanted:
                return False
    return True


def _args(args, where: str) -> tuple:
    if not args:
        return ()
    if not isinstance(args, list):
        raise InvalidInput("%s: a list is expected" % where)
    out = []
    for i, arg in enumerate(args):
        w = "%s[%d]" % (where, i)
        if not isinstance(arg, dict):
            raise InvalidInput("%s: a dict with index, value, op is expected" % w)
        unknown = sorted(set(arg) - {"index", "value", "valueTwo", "op"})
        if unknown:
            raise InvalidInput("%s: unknown key(s) %s" % (w, ", ".join(unknown)))
        index = _int(arg.get("index"), w + ".index")
        if index > 5:
            raise InvalidInput("%s.index: %d is not a syscall argument (0-5)" % (w, index))
        op = arg.get("op")
        if op not in _OPS:
            raise InvalidInput("%s.op: unsupported comparison %r (supported: %s)" % (w, op, ", ".join(_OPS)))
        value = _int(arg.get("value", 0), w + ".value")
        value_two = _int(arg.get("valueTwo", 0), w + ".valueTwo")
        out.append((index, op, value, value_two))
    return tuple(out)


def load_profile(source, where: str = "seccomp") -> dict:
    """A profile given as a dict, a JSON text, or the absolute path of a JSON file."""
    if isinstance(source, dict):
        return source
    if not isinstance(source, str):
        raise InvalidInput("%s: 'default', 'unconfined', a profile (dict) or the path of a JSON profile is expected, not %r" % (where, source))
    text = source
    if not source.lstrip().startswith("{"):
        if not os.path.isabs(source):
            raise InvalidInput("%s: '%s' is not 'default', 'unconfined' or an absolute path of a JSON profile" % (where, source))
        try:
            with open(source, "rb") as f:
                data = f.read(MAX_PROFILE_BYTES + 1)
        except OSError as e:
            raise InvalidInput("%s: cannot read the profile %s: %s" % (where, source, e.strerror))
        if len(data) > MAX_PROFILE_BYTES:
            raise InvalidInput("%s: the profile %s is larger than %d bytes" % (where, source, MAX_PROFILE_BYTES))
        text = data.decode("utf-8", "replace")
        where = "%s (%s)" % (where, source)
    try:
        profile = json.loads(text)
    except ValueError as e:
        raise InvalidInput("%s: the profile is not valid JSON: %s" % (where, e))
    if not isinstance(profile, dict):
        raise InvalidInput("%s: the profile must be a JSON object" % where)
    return profile


def profile_rules(profile: dict, arch: str, kept: frozenset, where: str = "seccomp") -> tuple:
    """An OCI/Docker profile -> (default action, rules for ``arch``).

    Names this arch does not have are skipped, as libseccomp does; rules whose
    includes/excludes do not hold for ``kept`` and this machine are skipped, as Docker does.
    """
    unsupported = [k for k in ("listenerPath", "listenerMetadata") if profile.get(k)]
    if profile.get("flags"):
        unsupported.append("flags")
    if unsupported:
        raise InvalidInput("%s: %s not supported (no seccomp agent, no filter flags)" % (where, ", ".join(unsupported)))
    if "defaultAction" not in profile:
        raise InvalidInput("%s: defaultAction is missing" % where)
    # OCI: defaultErrnoRet is for defaultAction only; a rule's errnoRet defaults to EPERM
    default_errno = errno.EPERM
    default = _action(profile["defaultAction"], profile.get("defaultErrnoRet"), errno.EPERM, where + ".defaultAction")
    arches = profile.get("architectures")
    if arches is not None and not isinstance(arches, list):
        raise InvalidInput("%s.architectures: a list is expected" % where)
    syscalls = profile.get("syscalls") or []
    if not isinstance(syscalls, list):
        raise InvalidInput("%s.syscalls: a list is expected" % where)
    table = SYSCALLS[arch]
    rules = []
    for i, entry in enumerate(syscalls):
        w = "%s.syscalls[%d]" % (where, i)
        if not isinstance(entry, dict):
            raise InvalidInput("%s: a dict with names and action is expected" % w)
        names = entry.get("names")
        if names is None and "name" in entry:  # the older Docker form
            names = [entry["name"]]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InvalidInput("%s.names: a list of syscall names is expected" % w)
        action = _action(entry.get("action"), entry.get("errnoRet"), default_errno, w + ".action")
        args = _args(entry.get("args"), w + ".args")
        if not _applies(entry, w, arch, kept):
            continue
        rules.extend(Rule(name, action, args) for name in names if name in table)
    return default, tuple(rules)


def default_rules(arch: str, kept: frozenset) -> tuple:
    """The default deny-list as (default action, rules)."""
    table = SYSCALLS[arch]
    eperm = SECCOMP_RET_ERRNO | errno.EPERM
    names = list(DENY_ALWAYS)
    for caps, calls in DENY_UNLESS:
        if not any(CAP_NUMBERS[c] in kept for c in caps):
            names.extend(calls)
    rules = [Rule(n, eperm) for n in names if n in table]
    rules.extend(Rule("personality", SECCOMP_RET_ALLOW, ((0, "SCMP_CMP_EQ", v, 0),)) for v in PERSONALITY_ALLOWED)
    rules.append(Rule("personality", eperm))
    if CAP_NUMBERS["CAP_SYS_ADMIN"] not in kept:
        # No new namespaces (above all no user namespace, where a guest would be "root" again
        # with every capability): clone/unshare with a namespace flag get EPERM; clone3 hides
        # its flags behind a pointer, so it gets ENOSYS and libc falls back to clone (Docker's way).
        rules.append(Rule("clone", SECCOMP_RET_ALLOW, ((0, "SCMP_CMP_MASKED_EQ", CLONE_NS_FLAGS, 0),)))
        rules.append(Rule("clone", eperm))
        rules.append(Rule("unshare", SECCOMP_RET_ALLOW, ((0, "SCMP_CMP_MASKED_EQ", CLONE_NS_FLAGS | CLONE_NEWTIME, 0),)))
        rules.append(Rule("unshare", eperm))
        rules.append(Rule("clone3", SECCOMP_RET_ERRNO | errno.ENOSYS))
    return SECCOMP_RET_ALLOW, tuple(rules)


# ---------------------------------------------------------------------------------------
# classic BPF
# ---------------------------------------------------------------------------------------
def _kill_action() -> int:
    try:
        with open("/proc/sys/kernel/seccomp/actions_avail") as f:
            if "kill_process" in f.read().split():
                return SECCOMP_RET_KILL_PROCESS
    except OSError:
        pass
    return SECCOMP_RET_KILL_THREAD


def _arg_checks(args: tuple, fail: str, uid: str) -> list:
    """Instructions that fall through when every comparison holds and jump to ``fail`` otherwise.

    A 64-bit argument is two 32-bit loads (little endian: low word first), as libseccomp does.
    """
    code = []
    for n, (index, op, value, value_two) in enumerate(args):
        lo_off = _OFF_ARGS + 8 * index
        hi_off = lo_off + 4
        ok = "%s_ok%d" % (uid, n)
        if op == "SCMP_CMP_MASKED_EQ":
            mask, datum = value, value_two & value
            code += [
                (_LD_W_ABS, 0, 0, hi_off), (_ALU_AND_K, 0, 0, mask >> 32), (_JMP_JEQ_K, 0, fail, datum >> 32),
                (_LD_W_ABS, 0, 0, lo_off), (_ALU_AND_K, 0, 0, mask & 0xFFFFFFFF), (_JMP_JEQ_K, 0, fail, datum & 0xFFFFFFFF),
            ]  # fmt: skip
            continue
        if op in ("SCMP_CMP_EQ", "SCMP_CMP_NE"):
            t, f = (ok, fail) if op == "SCMP_CMP_EQ" else (fail, ok)
            code += [
                (_LD_W_ABS, 0, 0, hi_off), (_JMP_JEQ_K, 0, f, value >> 32),
                (_LD_W_ABS, 0, 0, lo_off), (_JMP_JEQ_K, t, f, value & 0xFFFFFFFF),
            ]  # fmt: skip
        else:
            # GT/GE directly; LT = not GE, LE = not GT
            strict = op in ("SCMP_CMP_GT", "SCMP_CMP_LE")
            t, f = (ok, fail) if op in ("SCMP_CMP_GT", "SCMP_CMP_GE") else (fail, ok)
            code += [
                (_LD_W_ABS, 0, 0, hi_off), (_JMP_JGT_K, t, 0, value >> 32), (_JMP_JEQ_K, 0, f, value >> 32),
                (_LD_W_ABS, 0, 0, lo_off), ((_JMP_JGT_K if strict else _JMP_JGE_K), t, f, value & 0xFFFFFFFF),
            ]  # fmt: skip
        code.append(("label", ok))
    return code


def _assemble(code: list) -> bytes:
    labels = {}
    out = []
    for item in code:
        if item[0] == "label":
            labels[item[1]] = len(out)
        else:
            out.append(item)
    packed = []
    for i, (op, jt, jf, k) in enumerate(out):
        if op == _JMP_JA and isinstance(k, str):
            k = labels[k] - i - 1
        if isinstance(jt, str):
            jt = labels[jt] - i - 1
        if isinstance(jf, str):
            jf = labels[jf] - i - 1
        if not (0 <= jt <= 255 and 0 <= jf <= 255 and k >= 0):
            raise InvalidInput("seccomp: the filter is too large for a conditional jump (%d instructions)" % len(out))
        packed.append(struct.pack("=HBBI", op, jt, jf, k & 0xFFFFFFFF))
    if len(packed) > BPF_MAXINSNS:
        raise InvalidInput("seccomp: the filter has %d instructions, the kernel takes at most %d" % (len(packed), BPF_MAXINSNS))
    return b"".join(packed)


def compile_filter(default: int, rules: tuple, arch: str) -> bytes:
    """Classic BPF for ``rules`` (first match wins per syscall; rules with arguments first).

    Layout: check the arch (a foreign arch, and x32 calls on x86_64, are killed, as libseccomp's
    default bad-arch action in runc); a chain of ``jeq nr`` with, per syscall, either one ``ret``
    or a jump to its block of argument checks placed after the chain.
    """
    table = SYSCALLS[arch]
    kill = _kill_action()
    by_nr = {}
    for rule in rules:
        by_nr.setdefault(table[rule.name], []).append(rule)
    chain = [
        (_LD_W_ABS, 0, 0, _OFF_ARCH),
        (_JMP_JEQ_K, 1, 0, AUDIT_ARCH[arch]),
        (_RET_K, 0, 0, kill),
        (_LD_W_ABS, 0, 0, _OFF_NR),
    ]
    if arch == "x86_64":
        # nr -1 is what a tracer uses to skip a call; let it through like libseccomp
        chain += [(_JMP_JEQ_K, 2, 0, 0xFFFFFFFF), (_JMP_JGE_K, 0, 1, X32_SYSCALL_BIT), (_RET_K, 0, 0, kill)]
    blocks = []
    for nr in sorted(by_nr):
        group = by_nr[nr]
        plain = [r for r in group if not r.args]
        if len({r.action for r in plain}) > 1:
            raise InvalidInput("seccomp: syscall '%s' is given two different actions without arguments" % group[0].name)
        with_args = [r for r in group if r.args]
        if not with_args:
            chain += [(_JMP_JEQ_K, 0, 1, nr), (_RET_K, 0, 0, plain[0].action)]
            continue
        block = "nr%d" % nr
        chain += [(_JMP_JEQ_K, 0, 1, nr), (_JMP_JA, 0, 0, block)]
        blocks.append(("label", block))
        for n, rule in enumerate(with_args):
            uid = "%s_r%d" % (block, n)
            blocks += _arg_checks(rule.args, uid + "_fail", uid)
            blocks += [(_RET_K, 0, 0, rule.action), ("label", uid + "_fail")]
        blocks.append((_RET_K, 0, 0, plain[0].action if plain else default))
    chain.append((_RET_K, 0, 0, default))
    return _assemble(chain + blocks)


# ---------------------------------------------------------------------------------------
# the value
# ---------------------------------------------------------------------------------------
class Confinement(namedtuple("Confinement", "privileged capabilities no_new_privs seccomp profile_digest filter")):
    """A guest's confinement, validated and with its seccomp program compiled.

    ``capabilities`` are the kept names (bounding = effective = permitted; ambient and
    inheritable are empty). ``seccomp`` is 'default', 'unconfined' or 'profile';
    ``profile_digest`` tells two profiles apart. ``filter`` is the packed sock_filter array
    (empty: no filter). Build it with :meth:`from_params` or :meth:`from_settings`.
    """

    __slots__ = ()  # immutable, as a frozen dataclass (fields: privileged, capabilities, no_new_privs, seccomp, profile_digest, filter)

    @classmethod
    def from_params(cls, privileged=False, capabilities=None, no_new_privs=None, seccomp=None, arch: str | None = None) -> Confinement:
        if not isinstance(privileged, bool):
            raise InvalidInput("privileged: true or false is expected, not %r" % (privileged,))
        if no_new_privs is not None and not isinstance(no_new_privs, bool):
            raise InvalidInput("no_new_privs: true or false is expected, not %r" % (no_new_privs,))
        arch = arch or machine()
        _lib()  # load libc in the parent, not after the fork
        last = cap_last_cap()
        if privileged:
            if capabilities:
                raise InvalidInput("capabilities: a privileged guest keeps every capability; leave capabilities out or set privileged: false")
            if seccomp not in (None, "unconfined"):
                raise InvalidInput("seccomp: a privileged guest has no seccomp filter; leave seccomp out or set privileged: false")
            kept = frozenset(range(last + 1))
            return cls(True, tuple(cap_name(n) for n in sorted(kept)), bool(no_new_privs), "unconfined", "", b"")
        kept = kept_capabilities(capabilities, last)
        names = tuple(cap_name(n) for n in sorted(kept))
        nnp = True if no_new_privs is None else no_new_privs
        if seccomp is None or seccomp == "default":
            kind, digest = "default", ""
        elif seccomp == "unconfined":
            return cls(False, names, nnp, "unconfined", "", b"")
        else:
            kind = "profile"
            profile = load_profile(seccomp)
            import hashlib  # here: loading OpenSSL costs ~20 ms, and every entering process imports this file

            digest = hashlib.sha256(json.dumps(profile, sort_keys=True).encode()).hexdigest()[:16]
        if arch not in SYSCALLS:
            raise InvalidInput("seccomp: no syscall table for the architecture '%s'; set seccomp: unconfined on this host" % arch)
        if kind == "default":
            default, rules = default_rules(arch, kept)
        else:
            default, rules = profile_rules(profile, arch, kept)
        return cls(False, names, nnp, kind, digest, compile_filter(default, rules, arch))

    @classmethod
    def from_settings(cls, settings: dict | None, arch: str | None = None) -> Confinement:
        """From a guest's settings dict (keys privileged, capabilities, no_new_privs, seccomp)."""
        settings = settings or {}
        unknown = sorted(set(settings) - {"privileged", "capabilities", "no_new_privs", "seccomp"})
        if unknown:
            raise InvalidInput("confinement: unknown setting(s) %s" % ", ".join(unknown))
        return cls.from_params(
            privileged=settings.get("privileged") or False,
            capabilities=settings.get("capabilities"),
            no_new_privs=settings.get("no_new_privs"),
            seccomp=settings.get("seccomp"),
            arch=arch,
        )

    @property
    def cap_mask(self) -> int:
        mask = 0
        for name in self.capabilities:
            mask |= 1 << (CAP_NUMBERS[name] if name in CAP_NUMBERS else int(name[4:]))
        return mask

    def as_dict(self) -> dict:
        """What namespace_info shows and ``--diff`` compares."""
        seccomp = self.seccomp if self.seccomp != "profile" else "profile:" + self.profile_digest
        return {"privileged": self.privileged, "capabilities": list(self.capabilities), "no_new_privs": self.no_new_privs, "seccomp": seccomp}


# ---------------------------------------------------------------------------------------
# applying it (in the forked child, just before exec)
# ---------------------------------------------------------------------------------------
class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_libc = None


def _lib():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        _libc.prctl.restype = ctypes.c_int
    return _libc


def _prctl(option: int, arg2: int = 0, arg3: int = 0, what: str = "prctl") -> int:
    ret = _lib().prctl(option, arg2, arg3, 0, 0)
    if ret < 0:
        e = ctypes.get_errno()
        raise KernelError("%s: %s" % (what, os.strerror(e)), errno=e)
    return ret


def _capset(kept_mask: int) -> None:
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if _lib().capget(ctypes.byref(hdr), data) != 0:
        e = ctypes.get_errno()
        raise KernelError("capget: %s" % os.strerror(e), errno=e)
    for i in range(2):
        word = (kept_mask >> (32 * i)) & 0xFFFFFFFF
        data[i].permitted &= word
        data[i].effective = data[i].permitted
        data[i].inheritable = 0
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    if _lib().capset(ctypes.byref(hdr), data) != 0:
        e = ctypes.get_errno()
        raise KernelError("capset: %s" % os.strerror(e), errno=e)


def _install(program: bytes) -> None:
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    _prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog), what="installing the seccomp filter")


def apply_early(confinement: Confinement) -> bool:
    """Steps 1-2: cut the bounding set (and, without no_new_privs, install the filter).

    For a caller that still changes credentials (``setresuid``) before exec: this comes
    first, while CAP_SETPCAP is held; :func:`apply_late` then finishes. Returns whether the
    filter is installed already (the argument :func:`apply_late` takes).
    """
    if confinement.privileged:
        return False
    kept = confinement.cap_mask
    # every bit of the 64-bit sets: no /proc read here (the child may already see the guest's
    # /proc, or none); the kernel answers EINVAL for numbers beyond cap_last_cap
    for cap in range(64):
        if not kept >> cap & 1:
            ret = _lib().prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
            if ret < 0 and ctypes.get_errno() != errno.EINVAL:
                e = ctypes.get_errno()
                raise KernelError("dropping %s from the bounding set: %s" % (cap_name(cap), os.strerror(e)), errno=e)
    if confinement.filter and not confinement.no_new_privs:
        # without no_new_privs, installing a filter needs CAP_SYS_ADMIN: do it while we hold it
        _install(confinement.filter)
        return True
    return False


def apply_late(confinement: Confinement, installed: bool = False) -> None:
    """Steps 3-6: ambient cleared, capset, no_new_privs, the seccomp filter last."""
    if confinement.privileged:
        if confinement.no_new_privs:
            _prctl(PR_SET_NO_NEW_PRIVS, 1, what="setting no_new_privs")
        return
    ret = _lib().prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    if ret < 0 and ctypes.get_errno() != errno.EINVAL:  # EINVAL: a kernel before 4.3, no ambient set
        e = ctypes.get_errno()
        raise KernelError("clearing the ambient capabilities: %s" % os.strerror(e), errno=e)
    _capset(confinement.cap_mask)
    if confinement.no_new_privs:
        _prctl(PR_SET_NO_NEW_PRIVS, 1, what="setting no_new_privs")
    if confinement.filter and not installed:
        _install(confinement.filter)


def apply(confinement: Confinement) -> None:
    """Confine the calling process (a forked child, single-threaded, about to exec).

    Raises KernelError naming the step that failed; the caller must then not exec.
    """
    apply_late(confinement, apply_early(confinement))


SETTINGS = ("privileged", "capabilities", "no_new_privs", "seccomp")


def settings_of(record: GuestRecord) -> dict:
    """The confinement settings of a guest's record (its typed attributes; None: the default)."""
    return {k: getattr(record, k) for k in SETTINGS}


def for_guest(record: GuestRecord, arch: str | None = None) -> Confinement:
    """The confinement of a guest from its record (a guest recorded before these settings
    existed gets the default confinement). InvalidInput names the guest."""
    try:
        return Confinement.from_settings(settings_of(record), arch)
    except InvalidInput as exc:
        raise InvalidInput("guest %r: %s" % (record.name, exc.msg)) from None
