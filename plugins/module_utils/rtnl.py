# Copyright: (c) 2026, linuxns.guests contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An rtnetlink client: dumps of links, addresses and routes, decoded with struct, and the
changes of a veth's life.

netns_link reads a namespace's links, addresses and routes once per guest and changes
nothing on a run where all is as asked.  pyroute2 decodes every attribute of every
message into objects; at 1000 guests its decoding was about half of a no-change run
(docs/performance.md).  This reader asks the same three dumps (``ip link``, ``ip addr``,
``ip route`` ask them too) and decodes only the fields links.py compares, into plain
values equal to what pyroute2 gives for them (tests/unit/.../test_rtnl.py holds the
two side by side on real namespaces).

It also makes the changes of a link's usual life: a veth pair, a link's mtu, alias, master,
MAC and up state, and its addresses (:meth:`Reader.add_veth`, :meth:`Reader.set_link`,
:meth:`Reader.address`): pyroute2 spent ~0.5 ms of Python on each such request, ~2 ms of a
link's creation (docs/performance.md).  The rarer changes (bridges, macvlan and ipvlan links,
moving a host interface, routes, removal) go through pyroute2.

A :class:`Reader` is one ``NETLINK_ROUTE`` socket; it stays in the network namespace it
was created in (the caller enters a namespace, creates the reader, and leaves).

What a no-change run asks per guest is kept small, as ``ip`` does: one link by its name
(``ip link show dev NAME``: the kernel fills one link, not every one of the namespace) and,
where the kernel checks dump requests strictly (``NETLINK_GET_STRICT_CHK``, Linux 4.20),
only the routes of the table asked for.  The filters are applied here too, so an older
kernel that ignores them gives the same answer.
"""

from __future__ import annotations

import errno
import socket
import struct
import threading

from ansible_collections.linuxns.guests.plugins.module_utils import syscalls as sc
from ansible_collections.linuxns.guests.plugins.module_utils.errors import KernelError

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300
SOL_NETLINK = 270
NETLINK_GET_STRICT_CHK = 12  # the kernel applies a dump request's filters (Linux 4.20)
RTM_F_CLONED = 0x200  # a cached exception route (PMTU, redirect), not a route of the table
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER

# attribute numbers (linux/if_link.h, if_addr.h, rtnetlink.h)
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER = 1, 3, 4, 5, 10
IFLA_LINKINFO, IFLA_IFALIAS, IFLA_AF_SPEC, IFLA_LINK_NETNSID = 18, 20, 26, 37
IFLA_INET6_CONF = 2  # in IFLA_AF_SPEC's AF_INET6: the link's net.ipv6.conf values, by DEVCONF_ number
DEVCONF_DISABLE_IPV6 = 26
IFNAMSIZ = 16
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFLA_NET_NS_FD = 28
VETH_INFO_PEER = 1
IFF_UP = 0x1
IFA_ADDRESS, IFA_LOCAL = 1, 2
IFA_F_NODAD = 0x2
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_TABLE = 1, 4, 5, 6, 15
LINK_ATTRS = frozenset((IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER, IFLA_LINKINFO, IFLA_IFALIAS, IFLA_AF_SPEC,
                        IFLA_LINK_NETNSID))
ADDR_ATTRS = frozenset((IFA_ADDRESS, IFA_LOCAL))
ROUTE_ATTRS = frozenset((RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_TABLE))

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
_RTATTR = struct.Struct("=HH")  # len, type
_U32 = struct.Struct("=I")
_S32 = struct.Struct("=i")
BUFFER = 1 << 18  # one datagram of a dump: the kernel fills up to what the reader takes
DUMP_TRIES = 5  # a dump interrupted by a change meanwhile (NLM_F_DUMP_INTR) is asked again
_LOCAL = threading.local()  # one receive buffer per thread, shared by its readers (one per guest)


def _buffer() -> bytearray:
    buf = getattr(_LOCAL, "buf", None)
    if buf is None or len(buf) < BUFFER:
        buf = _LOCAL.buf = bytearray(BUFFER)
    return buf


def _rtattr(kind: int, payload: bytes) -> bytes:
    length = _RTATTR.size + len(payload)
    return _RTATTR.pack(length, kind) + payload + b"\0" * (-length % 4)


def _attrs(data, start: int, end: int, wanted=None) -> dict:
    """type -> payload (a memoryview) of the rtattrs in ``data[start:end]`` (only the types in
    ``wanted``, when given: a link has ~40 and links.py reads 8); the first one of a type wins."""
    out = {}
    unpack = _RTATTR.unpack_from
    while start + 4 <= end:
        length, kind = unpack(data, start)
        if length < 4 or start + length > end:
            break
        kind &= NLA_TYPE_MASK
        if (wanted is None or kind in wanted) and kind not in out:
            out[kind] = data[start + 4:start + length]
        start += (length + 3) & ~3
    return out


def _link_attrs(ifname=None, ns_fd=None, mtu=None, mac=None, ifalias=None, master=None) -> bytes:
    """The attributes of a link request, those given."""
    out = b""
    if ifname is not None:
        out += _rtattr(IFLA_IFNAME, ifname.encode("utf-8", "surrogateescape") + b"\0")
    if ns_fd is not None:
        out += _rtattr(IFLA_NET_NS_FD, _U32.pack(ns_fd))
    if mtu is not None:
        out += _rtattr(IFLA_MTU, _U32.pack(mtu))
    if mac is not None:
        out += _rtattr(IFLA_ADDRESS, bytes.fromhex(mac.replace(":", "")))
    if ifalias is not None:
        out += _rtattr(IFLA_IFALIAS, ifalias.encode("utf-8", "surrogateescape") + b"\0")
    if master is not None:
        out += _rtattr(IFLA_MASTER, _U32.pack(master))
    return out


def _string(value):
    return None if value is None else bytes(value).split(b"\0", 1)[0].decode("utf-8", "replace")


def _u32(value):
    return None if value is None or len(value) < 4 else _U32.unpack_from(value)[0]


def _s32(value):
    return None if value is None or len(value) < 4 else _S32.unpack_from(value)[0]


def _l2addr(value):
    return None if value is None else ":".join("%02x" % b for b in bytes(value))


def _ipv6_on(af_spec):
    """Whether IPv6 runs on a link (its ``net.ipv6.conf.IFNAME.disable_ipv6`` is 0), from its
    IFLA_AF_SPEC; None when the kernel has no IPv6 for it."""
    if af_spec is None:
        return None
    inet6 = _attrs(af_spec, 0, len(af_spec), (socket.AF_INET6,)).get(socket.AF_INET6)
    if inet6 is None:
        return None
    conf = _attrs(inet6, 0, len(inet6), (IFLA_INET6_CONF,)).get(IFLA_INET6_CONF)
    if conf is None or len(conf) < 4 * (DEVCONF_DISABLE_IPV6 + 1):
        return None
    return _S32.unpack_from(conf, 4 * DEVCONF_DISABLE_IPV6)[0] == 0


def _ip(family: int, value):
    if value is None:
        return None
    try:
        return socket.inet_ntop(family, bytes(value))
    except (ValueError, OSError):
        return None


class Reader:
    """One rtnetlink socket, in the network namespace the caller is in when it makes it."""

    def __init__(self, label: str = "this namespace"):
        self.label = label
        try:
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
        except OSError as exc:
            raise sc.fail("socket", "AF_NETLINK, in %s" % label, exc.errno or errno.EIO) from None
        try:
            self.sock.bind((0, 0))
        except OSError as exc:
            self.sock.close()
            raise sc.fail("bind", "AF_NETLINK, in %s" % label, exc.errno or errno.EIO) from None
        try:
            self.sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
        except OSError:  # before Linux 4.20: the filters are applied here only
            pass
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def _error(self, what: str, detail: str, err: int) -> KernelError:
        """The error of a dump of ``what`` (returned so callers can ``raise``)."""
        return KernelError("netlink dump of %s in %s: %s" % (what, self.label, detail), errno=err)

    # ---- the dump --------------------------------------------------------------------------
    def dump(self, msg_type: int, header: bytes, what: str) -> list:
        """Every message of one dump as (type, memoryview of its payload); asked again when
        the kernel says a change broke it up (NLM_F_DUMP_INTR)."""
        for _try in range(DUMP_TRIES):
            msgs, interrupted = self._dump_once(msg_type, header, what)
            if not interrupted:
                return msgs
        raise self._error(what, "interrupted by changes %d times in a row" % DUMP_TRIES, errno.EAGAIN)

    def _dump_once(self, msg_type: int, header: bytes, what: str):
        msgs, interrupted = [], False
        for kind, flags, body in self._exchange(msg_type, NLM_F_REQUEST | NLM_F_DUMP, header, what):
            if flags & NLM_F_DUMP_INTR:
                interrupted = True
            if kind == NLMSG_DONE:
                return msgs, interrupted
            if kind == NLMSG_ERROR:
                code = -_S32.unpack_from(body)[0]
                if code == 0:
                    return msgs, interrupted
                raise self._error(what, "failed: " + sc.errno_text(code), code)
            msgs.append((kind, body))
        raise self._error(what, "the answer ended early", errno.EPROTO)  # not reached: _exchange reads until told

    def _exchange(self, msg_type: int, flags: int, payload: bytes, what: str):
        """Send one request; yield (type, flags, payload) of each message answering it, for as
        long as the caller reads on."""
        self.seq += 1
        seq = self.seq
        req = _NLMSGHDR.pack(_NLMSGHDR.size + len(payload), msg_type, flags, seq, 0) + payload
        try:
            self.sock.send(req)
        except OSError as exc:
            raise self._error(what, "send failed: " + sc.errno_text(exc.errno), exc.errno) from None
        buf = _buffer()
        view = memoryview(buf)
        while True:
            try:
                n = self.sock.recv_into(buf, BUFFER, socket.MSG_TRUNC)
            except OSError as exc:
                raise self._error(what, "recv failed: " + sc.errno_text(exc.errno), exc.errno) from None
            if n > BUFFER:
                raise self._error(what, "a datagram of %d bytes is larger than the %d the reader takes" % (n, BUFFER), errno.EMSGSIZE)
            data = bytes(view[:n])  # the buffer is the thread's: the messages keep a copy
            pos = 0
            while pos + _NLMSGHDR.size <= n:
                length, kind, mflags, mseq, _pid = _NLMSGHDR.unpack_from(data, pos)
                if length < _NLMSGHDR.size or pos + length > n:
                    raise self._error(what, "a message cut short", errno.EPROTO)
                if mseq == seq:
                    yield kind, mflags, memoryview(data)[pos + _NLMSGHDR.size:pos + length]
                pos += (length + 3) & ~3

    # ---- changes ---------------------------------------------------------------------------
    def request(self, msg_type: int, flags: int, payload: bytes, what: str) -> None:
        """One change, which the kernel acknowledges; OSError with its errno when it refuses it
        (as pyroute2's NetlinkError gives it: the caller names the change)."""
        try:
            for kind, _flags, body in self._exchange(msg_type, NLM_F_REQUEST | NLM_F_ACK | flags, payload, what):
                if kind == NLMSG_ERROR:
                    code = -_S32.unpack_from(body)[0]
                    if code:
                        raise OSError(code, sc.errno_text(code))
                    return
        except KernelError as exc:  # the socket's own failure
            raise OSError(exc.errno or errno.EIO, exc.msg) from None

    def add_veth(self, ifname: str, ns_fd: int, peer: dict, mtu=None, mac=None) -> None:
        """A veth pair, ``ifname`` in the namespace of ``ns_fd`` and ``peer["ifname"]`` in
        ``peer["ns_fd"]``'s (``peer``'s ``mtu`` and ``mac`` too), as ``ip link add ... type veth
        peer ...`` makes it."""
        peer_msg = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _link_attrs(
            peer["ifname"], peer["ns_fd"], peer.get("mtu"), peer.get("mac"))
        info = _rtattr(IFLA_INFO_KIND, b"veth") + _rtattr(IFLA_INFO_DATA, _rtattr(VETH_INFO_PEER, peer_msg))
        payload = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _link_attrs(ifname, ns_fd, mtu, mac) + _rtattr(IFLA_LINKINFO, info)
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, payload, "veth %r" % ifname)

    def set_link(self, index: int, up=None, **attrs) -> None:
        """Link ``index``'s ``mtu``, ``mac``, ``ifalias`` and ``master`` (those given) and, ``up``
        True or False, its state, in one request (the kernel applies the state last)."""
        flag = 0 if up is None else IFF_UP
        head = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, IFF_UP if up else 0, flag)
        self.request(RTM_SETLINK, 0, head + _link_attrs(**attrs), "link #%d" % index)

    def del_link(self, index: int) -> None:
        """Remove link ``index`` (a veth: with its peer), as ``ip link del`` does."""
        self.request(RTM_DELLINK, 0, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0), "link #%d" % index)

    def address(self, add: bool, index: int, ip, prefixlen: int, nodad: bool = False) -> None:
        """Add (``add``) or remove address ``ip`` (an ipaddress address) / ``prefixlen`` on link
        ``index``, as ``ip address add|del`` does (IFA_LOCAL and IFA_ADDRESS both the address)."""
        family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
        head = _IFADDRMSG.pack(family, prefixlen, IFA_F_NODAD if nodad else 0, 0, index)
        payload = head + _rtattr(IFA_LOCAL, ip.packed) + _rtattr(IFA_ADDRESS, ip.packed)
        if add:
            self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, payload, "address %s" % ip)
        else:
            self.request(RTM_DELADDR, 0, payload, "address %s" % ip)

    # ---- the three dumps, decoded --------------------------------------------------------
    def _decoded(self, request: int, reply: int, head: struct.Struct, header: bytes, what: str, wanted=None):
        """(fixed header fields, attributes of the ``wanted`` types) of every ``reply`` message of one dump."""
        for kind, body in self.dump(request, header, what):
            if kind == reply and len(body) >= head.size:
                yield head.unpack_from(body), _attrs(body, head.size, len(body), wanted)

    def links(self) -> list:
        """Every link: index, ifname, kind, mac, mtu, flags, alias, link, link_netnsid, master, ipv6."""
        ask = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        return [_link(head, a) for head, a in self._decoded(RTM_GETLINK, RTM_NEWLINK, _IFINFOMSG, ask, "links", LINK_ATTRS)]

    def link(self, name: str):
        """The link whose name is ``name`` (as :meth:`links` gives it), or None: one request,
        so the kernel fills one link.  An alternative name (``ip link property add altname``)
        is not a link's name here, as it is not in :meth:`links`."""
        what = "link %r" % name
        raw = name.encode("utf-8", "surrogateescape")
        if not raw or len(raw) >= IFNAMSIZ or b"\0" in raw:
            return None  # no link can have it (the kernel would refuse the request)
        ask = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _rtattr(IFLA_IFNAME, raw + b"\0")
        for kind, _flags, body in self._exchange(RTM_GETLINK, NLM_F_REQUEST, ask, what):
            if kind == NLMSG_ERROR:
                code = -_S32.unpack_from(body)[0]
                if code == errno.ENODEV:
                    return None
                raise self._error(what, "failed: " + sc.errno_text(code), code)
            if kind == RTM_NEWLINK and len(body) >= _IFINFOMSG.size:
                found = _link(_IFINFOMSG.unpack_from(body), _attrs(body, _IFINFOMSG.size, len(body), LINK_ATTRS))
                return found if found["ifname"] == name else None
        return None  # not reached: _exchange reads until an answer

    def addresses(self) -> list:
        """Every address: family, index, prefixlen, address (IFA_LOCAL before IFA_ADDRESS for
        IPv4, where IFA_ADDRESS is the peer on a point-to-point link)."""
        out = []
        ask = _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        for (family, prefixlen, _flags, _scope, index), a in self._decoded(RTM_GETADDR, RTM_NEWADDR, _IFADDRMSG, ask, "addresses", ADDR_ATTRS):
            if family == socket.AF_INET6:
                addr = _ip(family, a.get(IFA_ADDRESS))
            else:
                addr = _ip(family, a.get(IFA_LOCAL)) or _ip(family, a.get(IFA_ADDRESS))
            out.append({"family": family, "index": index, "prefixlen": prefixlen, "address": addr})
        return out

    def routes(self, family: int, table=None, rtype=None) -> list:
        """Every route of ``family``: table (RTA_TABLE, else the header's), type, proto, dst
        (None for a default route), dst_len, gateway, priority, oif.  With ``table`` (and
        ``rtype``), only the routes of that table (and type), cached exception routes left
        out, as ``ip route show table N`` gives them."""
        msgs = None
        if table is not None:
            ask = _RTMSG.pack(family, 0, 0, 0, table if table < 256 else 0, 0, 0, rtype or 0, 0) + _rtattr(RTA_TABLE, _U32.pack(table))
            try:
                msgs = list(self._decoded(RTM_GETROUTE, RTM_NEWROUTE, _RTMSG, ask, "routes", ROUTE_ATTRS))
            except KernelError as exc:
                if exc.errno == errno.ENOENT:
                    return []  # strict: the namespace has no such table (yet)
                if exc.errno != errno.EINVAL:
                    raise
                # a family that takes no filter answered too (MPLS: a dump of a family with no
                # routes of its own goes to every family): the plain dump, filtered below
        if msgs is None:
            msgs = self._decoded(RTM_GETROUTE, RTM_NEWROUTE, _RTMSG, _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0), "routes", ROUTE_ATTRS)
        out = []
        for (rfamily, dst_len, _src_len, _tos, htable, proto, _scope, kind, flags), a in msgs:
            if rfamily != family:
                continue
            rtable = _u32(a.get(RTA_TABLE)) or htable
            if table is not None and (rtable != table or flags & RTM_F_CLONED or (rtype is not None and kind != rtype)):
                continue
            out.append({
                "table": rtable,
                "type": kind,
                "proto": proto,
                "dst": _ip(family, a.get(RTA_DST)),
                "dst_len": dst_len,
                "gateway": _ip(family, a.get(RTA_GATEWAY)),
                "priority": _u32(a.get(RTA_PRIORITY)),
                "oif": _u32(a.get(RTA_OIF)),
            })
        return out


def _link(head: tuple, a: dict) -> dict:
    """A link's fields from its RTM_NEWLINK header and attributes."""
    _family, _type, index, flags, _change = head
    info = a.get(IFLA_LINKINFO)
    return {
        "index": index,
        "flags": flags,
        "ifname": _string(a.get(IFLA_IFNAME)),
        "kind": _string(_attrs(info, 0, len(info)).get(IFLA_INFO_KIND)) if info is not None else None,
        "mac": _l2addr(a.get(IFLA_ADDRESS)),
        "mtu": _u32(a.get(IFLA_MTU)),
        "alias": _string(a.get(IFLA_IFALIAS)),
        "link": _u32(a.get(IFLA_LINK)),
        "link_netnsid": _s32(a.get(IFLA_LINK_NETNSID)),
        "master": _u32(a.get(IFLA_MASTER)),
        "ipv6": _ipv6_on(a.get(IFLA_AF_SPEC)),
    }
