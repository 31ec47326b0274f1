// agnhost with SCTP over raw IP sockets, for the network-policy-api conformance pods on
// weir's real node. This kernel has no SCTP sockets, so upstream agnhost's `porter` exits
// when asked to serve SCTP (the pods never become Ready) and its `connect --protocol=sctp`
// cannot dial. This front takes exactly those two cases and hands every other command,
// unchanged, to the upstream agnhost (/agnhost-upstream):
//
//	agnhost porter                        with only SERVE_SCTP_PORT_<n> set: answer every
//	                                      SCTP INIT to port n with an INIT-ACK
//	agnhost connect --protocol=sctp H:P   send an INIT, succeed on its INIT-ACK; print
//	                                      TIMEOUT (as upstream does) when none comes
//
// On the wire these are the first two packets of a real SCTP association (RFC 9260 §5.1),
// so nftables and conntrack classify, filter and track them as SCTP; the association is
// never completed (no COOKIE-ECHO), which a policy verdict does not depend on.
package main

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	upstream   = "/agnhost-upstream"
	protoSCTP  = 132
	chunkInit  = 1
	chunkAck   = 2
	headerLen  = 12
	initLen    = 20
	cookieType = 7
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "connect":
			if code, ok := connect(os.Args[2:]); ok {
				os.Exit(code)
			}
		case "porter":
			if ports := sctpOnlyPorts(os.Environ()); len(ports) > 0 {
				serve(ports)
			}
		}
	}
	args := append([]string{"/agnhost"}, os.Args[1:]...)
	err := syscall.Exec(upstream, args, os.Environ())
	fmt.Fprintf(os.Stderr, "agnhost-sctp: exec %s: %v\n", upstream, err)
	os.Exit(127)
}

// connect handles `connect --protocol=sctp HOST:PORT`; ok is false for anything else.
func connect(args []string) (code int, ok bool) {
	fs := flag.NewFlagSet("connect", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	timeout := fs.Duration("timeout", 5*time.Second, "")
	protocol := fs.String("protocol", "tcp", "")
	if err := fs.Parse(args); err != nil || *protocol != "sctp" || fs.NArg() != 1 {
		return 0, false
	}
	host, port, err := net.SplitHostPort(fs.Arg(0))
	ip := net.ParseIP(host)
	dport, perr := strconv.ParseUint(port, 10, 16)
	if err != nil || ip == nil || perr != nil {
		fmt.Fprintf(os.Stderr, "OTHER: bad target %q\n", fs.Arg(0))
		return 1, true
	}
	switch err := dial(ip, uint16(dport), *timeout); {
	case err == nil:
		return 0, true
	case errors.Is(err, errTimeout):
		fmt.Fprintln(os.Stderr, "TIMEOUT")
	default:
		fmt.Fprintf(os.Stderr, "OTHER: %v\n", err)
	}
	return 1, true
}

var errTimeout = errors.New("timeout")

// dial sends one INIT and waits for the INIT-ACK that answers it (same ports, our tag).
func dial(ip net.IP, dport uint16, timeout time.Duration) error {
	fd, err := rawSocket(ip)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	tag := random32()
	// The source port follows the clock: probes from one pod, each its own process, never
	// reuse a port within the 3 s conntrack keeps an unanswered or half-open association,
	// so no probe rides on an earlier one's conntrack entry.
	sport := uint16(32768 + time.Now().UnixMilli()%28000)
	init := initChunk(sport, dport, 0, chunkInit, tag, nil)
	// Like an SCTP stack, the INIT is sent again when unanswered: after RTO.Initial (1 s),
	// doubling (RFC 9260 §15), as TCP retransmits a SYN.
	deadline := time.Now().Add(timeout)
	resend, rto := time.Now(), time.Second
	buf := make([]byte, 65536)
	for {
		now := time.Now()
		left := deadline.Sub(now)
		if left <= 0 {
			return errTimeout
		}
		if !now.Before(resend) {
			if err := sendTo(fd, ip, init); err != nil {
				return err
			}
			resend, rto = now.Add(rto), 2*rto
		}
		if wait := resend.Sub(now); wait < left {
			left = wait
		}
		// A zero SO_RCVTIMEO blocks forever: wait at least a millisecond.
		left = max(left, time.Millisecond)
		tv := syscall.NsecToTimeval(left.Nanoseconds())
		if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		n, from, err := syscall.Recvfrom(fd, buf, 0)
		if err != nil {
			if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
				continue
			}
			return err
		}
		p, ok := sctpOf(buf[:n], ip)
		if !ok || !ip.Equal(addrOf(from)) {
			continue
		}
		if binary.BigEndian.Uint16(p[0:]) == dport && binary.BigEndian.Uint16(p[2:]) == sport &&
			binary.BigEndian.Uint32(p[4:]) == tag && p[headerLen] == chunkAck {
			return nil
		}
	}
}

// sctpOnlyPorts are the SERVE_SCTP_PORT_<n> ports when no other porter variable is set
// (those porter serves itself, and no conformance pod mixes them).
func sctpOnlyPorts(env []string) []uint16 {
	var ports []uint16
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if rest, ok := strings.CutPrefix(name, "SERVE_SCTP_PORT_"); ok {
			p, err := strconv.ParseUint(rest, 10, 16)
			if err != nil {
				return nil
			}
			ports = append(ports, uint16(p))
		} else if strings.HasPrefix(name, "SERVE_PORT_") || strings.HasPrefix(name, "SERVE_TLS_PORT_") ||
			strings.HasPrefix(name, "SERVE_UDP_PORT_") {
			return nil
		}
	}
	return ports
}

// serve answers INITs to its ports on IPv4 and IPv6 until killed.
func serve(ports []uint16) {
	ours := map[uint16]bool{}
	for _, p := range ports {
		ours[p] = true
	}
	fmt.Printf("serving SCTP (INIT → INIT-ACK over raw sockets) on ports %v\n", ports)
	done := make(chan error, 2)
	for _, ip := range []net.IP{net.IPv4zero, net.IPv6zero} {
		fd, err := rawSocket(ip)
		if err != nil && ip.To4() == nil {
			// A pod without IPv6 still serves IPv4.
			fmt.Fprintf(os.Stderr, "agnhost-sctp: no IPv6 raw socket (%v): IPv4 only\n", err)
			continue
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "agnhost-sctp: raw socket: %v\n", err)
			os.Exit(1)
		}
		go func(fd int, family net.IP) { done <- answer(fd, family, ours) }(fd, ip)
	}
	fmt.Fprintf(os.Stderr, "agnhost-sctp: %v\n", <-done)
	os.Exit(1)
}

// answer serves one raw socket of `family` (the unspecified address of IPv4 or IPv6).
func answer(fd int, family net.IP, ours map[uint16]bool) error {
	buf := make([]byte, 65536)
	for {
		n, from, err := syscall.Recvfrom(fd, buf, 0)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return err
		}
		p, ok := sctpOf(buf[:n], family)
		if !ok || p[headerLen] != chunkInit || len(p) < headerLen+initLen {
			continue
		}
		sport, dport := binary.BigEndian.Uint16(p[0:]), binary.BigEndian.Uint16(p[2:])
		if !ours[dport] {
			continue
		}
		peerTag := binary.BigEndian.Uint32(p[headerLen+4:])
		cookie := make([]byte, 16)
		_, _ = rand.Read(cookie)
		reply := initChunk(dport, sport, peerTag, chunkAck, random32(), cookie)
		if err := sendTo(fd, addrOf(from), reply); err != nil {
			fmt.Fprintf(os.Stderr, "agnhost-sctp: reply: %v\n", err)
		}
	}
}

// initChunk is an SCTP packet holding one INIT (vtag 0) or INIT-ACK (vtag: the peer's
// initiate tag, with a State Cookie parameter), checksummed.
func initChunk(sport, dport uint16, vtag uint32, kind byte, tag uint32, cookie []byte) []byte {
	p := make([]byte, headerLen+initLen)
	binary.BigEndian.PutUint16(p[0:], sport)
	binary.BigEndian.PutUint16(p[2:], dport)
	binary.BigEndian.PutUint32(p[4:], vtag)
	c := p[headerLen:]
	c[0] = kind
	binary.BigEndian.PutUint32(c[4:], tag)   // initiate tag
	binary.BigEndian.PutUint32(c[8:], 65535) // a_rwnd
	binary.BigEndian.PutUint16(c[12:], 1)    // outbound streams
	binary.BigEndian.PutUint16(c[14:], 1)    // inbound streams
	binary.BigEndian.PutUint32(c[16:], tag)  // initial TSN
	if cookie != nil {
		param := make([]byte, 4+len(cookie))
		binary.BigEndian.PutUint16(param[0:], cookieType)
		binary.BigEndian.PutUint16(param[2:], uint16(len(param)))
		copy(param[4:], cookie)
		p = append(p, param...)
	}
	binary.BigEndian.PutUint16(p[headerLen+2:], uint16(len(p)-headerLen)) // c may be stale after append
	binary.LittleEndian.PutUint32(p[8:], crc32.Checksum(p, castagnoli))
	return p
}

// sctpOf is the SCTP packet in what a raw socket read: IPv4 raw sockets deliver the IP
// header too, IPv6 ones do not.
func sctpOf(b []byte, family net.IP) ([]byte, bool) {
	if family.To4() != nil {
		if len(b) < 20 {
			return nil, false
		}
		ihl := int(b[0]&0x0f) * 4
		if len(b) < ihl {
			return nil, false
		}
		b = b[ihl:]
	}
	return b, len(b) >= headerLen+4
}

func rawSocket(ip net.IP) (int, error) {
	if ip.To4() != nil {
		return syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, protoSCTP)
	}
	return syscall.Socket(syscall.AF_INET6, syscall.SOCK_RAW, protoSCTP)
}

func sendTo(fd int, ip net.IP, p []byte) error {
	if v4 := ip.To4(); v4 != nil {
		sa := &syscall.SockaddrInet4{}
		copy(sa.Addr[:], v4)
		return syscall.Sendto(fd, p, 0, sa)
	}
	sa := &syscall.SockaddrInet6{}
	copy(sa.Addr[:], ip.To16())
	return syscall.Sendto(fd, p, 0, sa)
}

func addrOf(sa syscall.Sockaddr) net.IP {
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return net.IP(a.Addr[:])
	case *syscall.SockaddrInet6:
		return net.IP(a.Addr[:])
	}
	return nil
}

func random32() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	if v := binary.BigEndian.Uint32(b[:]); v != 0 {
		return v
	}
	return 1 // a zero initiate tag is invalid
}
