"""Keep a server the tests start on loopback: an ``LD_PRELOAD`` library that turns a bind
to every interface into a bind to loopback, and a check of where a process listens.

Debian's Orthanc (1.10) has no setting for the address it listens on: it binds its HTTP and
DICOM ports on every interface. The tests start it with :func:`loopback_preload` in its
environment and assert with :func:`listening_addresses` that both ports are on loopback.
"""

import subprocess
from pathlib import Path

from helpers import debian_tool

SOURCE = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

/* bind() to INADDR_ANY / in6addr_any becomes a bind to the loopback address. */
int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    static int (*real_bind)(int, const struct sockaddr *, socklen_t);
    if (!real_bind)
        real_bind = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
    if (addr && addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        struct sockaddr_in copy;
        memcpy(&copy, addr, sizeof copy);
        if (copy.sin_addr.s_addr == htonl(INADDR_ANY)) {
            copy.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            return real_bind(fd, (const struct sockaddr *)&copy, sizeof copy);
        }
    }
    if (addr && addr->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 copy;
        memcpy(&copy, addr, sizeof copy);
        if (IN6_IS_ADDR_UNSPECIFIED(&copy.sin6_addr)) {
            copy.sin6_addr = in6addr_loopback;
            return real_bind(fd, (const struct sockaddr *)&copy, sizeof copy);
        }
    }
    return real_bind(fd, addr, len);
}
"""
LOOPBACK = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1, ::1 in /proc/net
LISTEN = "0A"


def loopback_preload(folder):
    """``{"LD_PRELOAD": path}`` of the library, compiled into ``folder`` with the C compiler."""
    compiler = debian_tool("cc", "gcc")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    source, library = folder / "loopback_only.c", folder / "loopback_only.so"
    source.write_text(SOURCE)
    subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(library), str(source),
                    "-ldl"], check=True, capture_output=True)
    return {"LD_PRELOAD": str(library)}


def listening_addresses(port):
    """The local addresses (hex, as /proc/net/tcp{,6} writes them) listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, _, hex_port = fields[1].partition(":")
            if int(hex_port, 16) == port and fields[3] == LISTEN:
                found.add(address)
    return found


def listens_on_loopback_only(port):
    addresses = listening_addresses(port)
    return bool(addresses) and addresses <= LOOPBACK
