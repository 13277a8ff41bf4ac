/// The Linux system calls of the epoll transport, through libc. Every parameter is blittable (int,
/// int64, nativeint), so Native AOT compiles the calls without runtime marshalling; errno is read
/// with Marshal.GetLastPInvokeError right after a call that returned -1.
module internal Apisix.Runner.Linux.Native

#nowarn "9" // native pointers: the event buffer and the epoll_event written on the stack

open System
open System.Runtime.CompilerServices
open System.Runtime.InteropServices
open Microsoft.FSharp.NativeInterop

[<DllImport("libc", SetLastError = true)>]
extern int epoll_create1(int flags)

[<DllImport("libc", SetLastError = true)>]
extern int epoll_ctl(int epfd, int op, int fd, nativeint event)

[<DllImport("libc", SetLastError = true)>]
extern int epoll_wait(int epfd, nativeint events, int maxevents, int timeout)

[<DllImport("libc", SetLastError = true)>]
extern int eventfd(uint32 initval, int flags)

[<DllImport("libc", SetLastError = true)>]
extern int accept4(int sockfd, nativeint addr, nativeint addrlen, int flags)

[<DllImport("libc", SetLastError = true)>]
extern nativeint recv(int sockfd, nativeint buf, nativeint len, int flags)

[<DllImport("libc", SetLastError = true)>]
extern nativeint send(int sockfd, nativeint buf, nativeint len, int flags)

[<DllImport("libc", SetLastError = true)>]
extern nativeint read(int fd, nativeint buf, nativeint count)

[<DllImport("libc", SetLastError = true)>]
extern nativeint write(int fd, nativeint buf, nativeint count)

[<DllImport("libc", SetLastError = true)>]
extern int shutdown(int sockfd, int how)

[<DllImport("libc", SetLastError = true)>]
extern int close(int fd)

/// Declared with its third argument as an int: F_DUPFD_CLOEXEC and F_GETFL/F_SETFL take one.
[<DllImport("libc", SetLastError = true)>]
extern int fcntl(int fd, int cmd, int arg)

[<DllImport("libc")>]
extern int gettid()

[<DllImport("libc", SetLastError = true)>]
extern int getrlimit(int resource, nativeint rlim)

[<DllImport("libc", SetLastError = true)>]
extern int setrlimit(int resource, nativeint rlim)

// epoll_ctl operations and event bits (sys/epoll.h).
[<Literal>]
let EPOLL_CTL_ADD = 1

[<Literal>]
let EPOLL_CTL_DEL = 2

[<Literal>]
let EPOLL_CTL_MOD = 3

[<Literal>]
let EPOLLIN = 0x001u

[<Literal>]
let EPOLLOUT = 0x004u

[<Literal>]
let EPOLLERR = 0x008u

[<Literal>]
let EPOLLHUP = 0x010u

[<Literal>]
let EPOLLRDHUP = 0x2000u

[<Literal>]
let EPOLLET = 0x80000000u

// Flags.
[<Literal>]
let O_NONBLOCK = 0x800

[<Literal>]
let O_CLOEXEC = 0x80000

[<Literal>]
let EPOLL_CLOEXEC = O_CLOEXEC

[<Literal>]
let SOCK_NONBLOCK = O_NONBLOCK

[<Literal>]
let SOCK_CLOEXEC = O_CLOEXEC

[<Literal>]
let EFD_NONBLOCK = O_NONBLOCK

[<Literal>]
let EFD_CLOEXEC = O_CLOEXEC

[<Literal>]
let MSG_DONTWAIT = 0x40

[<Literal>]
let MSG_NOSIGNAL = 0x4000

[<Literal>]
let SHUT_RDWR = 2

[<Literal>]
let F_GETFL = 3

[<Literal>]
let F_SETFL = 4

[<Literal>]
let F_DUPFD_CLOEXEC = 1030

[<Literal>]
let RLIMIT_NOFILE = 7

// errno values (asm-generic, shared by x86-64 and arm64).
[<Literal>]
let EINTR = 4

[<Literal>]
let EBADF = 9

[<Literal>]
let EAGAIN = 11

[<Literal>]
let ENOMEM = 12

[<Literal>]
let ENFILE = 23

[<Literal>]
let EMFILE = 24

[<Literal>]
let EPIPE = 32

[<Literal>]
let ENOBUFS = 105

[<Literal>]
let ECONNABORTED = 103

[<Literal>]
let ECONNRESET = 104

/// errno of the last failed call on this thread.
let inline errno () = Marshal.GetLastPInvokeError()

/// struct epoll_event is packed on x86-64 (12 bytes, data at offset 4) and naturally aligned
/// elsewhere (16 bytes, data at offset 8).
let packed = RuntimeInformation.ProcessArchitecture = Architecture.X64

/// Bytes of one struct epoll_event.
let EventSize = if packed then 12 else 16

/// Offset of epoll_event.data.
let DataOffset = if packed then 4 else 8

/// The events of entry `i` of an epoll_wait buffer.
let inline eventBits (events: nativeint) (i: int) : uint32 =
    Unsafe.ReadUnaligned<uint32>(NativePtr.toVoidPtr (NativePtr.ofNativeInt<byte> (events + nativeint (i * EventSize))))

/// The data of entry `i` of an epoll_wait buffer.
let inline eventData (events: nativeint) (i: int) : uint64 =
    Unsafe.ReadUnaligned<uint64>(NativePtr.toVoidPtr (NativePtr.ofNativeInt<byte> (events + nativeint (i * EventSize + DataOffset))))

/// epoll_ctl with an event built on the stack; 0 or errno.
let control (epfd: int) (op: int) (fd: int) (events: uint32) (data: uint64) : int =
    let ev = NativePtr.stackalloc<uint64> 2
    let p = NativePtr.toNativeInt ev
    Unsafe.WriteUnaligned<uint32>(NativePtr.toVoidPtr ev, events)
    Unsafe.WriteUnaligned<uint64>(NativePtr.toVoidPtr (NativePtr.ofNativeInt<byte> (p + nativeint DataOffset)), data)
    if epoll_ctl (epfd, op, fd, p) = 0 then 0 else errno ()

/// The soft and hard limits of open files.
let fileLimit () : struct (int64 * int64) =
    let r = NativePtr.stackalloc<int64> 2

    if getrlimit (RLIMIT_NOFILE, NativePtr.toNativeInt r) <> 0 then
        struct (-1L, -1L)
    else
        struct (NativePtr.get r 0, NativePtr.get r 1)

/// Sets the soft limit of open files (tests and the bench host use it to provoke EMFILE); 0 or errno.
let setFileLimit (soft: int64) : int =
    let r = NativePtr.stackalloc<int64> 2

    if getrlimit (RLIMIT_NOFILE, NativePtr.toNativeInt r) <> 0 then
        errno ()
    else
        NativePtr.set r 0 soft

        if setrlimit (RLIMIT_NOFILE, NativePtr.toNativeInt r) = 0 then 0 else errno ()
