package main

import (
	"encoding/binary"
	"hash/crc32"
	"net"
	"testing"
)

// The SCTP checksum is CRC32c; RFC 3720 B.4 gives known vectors.
func TestChecksumIsCRC32c(t *testing.T) {
	if got := crc32.Checksum(make([]byte, 32), castagnoli); got != 0x8A9136AA {
		t.Fatalf("crc32c(32 zero bytes) = %#x", got)
	}
}

// An INIT-ACK answers the INIT it replies to: ports swapped, the INIT's initiate tag as
// its verification tag, a State Cookie, a checksum over the whole packet.
func TestInitAckAnswersTheInit(t *testing.T) {
	init := initChunk(40000, 9003, 0, chunkInit, 0xdeadbeef, nil)
	if len(init) != 32 || init[headerLen] != chunkInit || binary.BigEndian.Uint32(init[4:]) != 0 {
		t.Fatalf("INIT: % x", init)
	}
	ack := initChunk(9003, 40000, binary.BigEndian.Uint32(init[headerLen+4:]), chunkAck, 7, make([]byte, 16))
	if got := binary.BigEndian.Uint32(ack[4:]); got != 0xdeadbeef {
		t.Fatalf("vtag %#x", got)
	}
	if binary.BigEndian.Uint16(ack[0:]) != 9003 || binary.BigEndian.Uint16(ack[2:]) != 40000 {
		t.Fatalf("ports: % x", ack[:4])
	}
	if l := binary.BigEndian.Uint16(ack[headerLen+2:]); int(l) != len(ack)-headerLen || l != initLen+20 {
		t.Fatalf("chunk length %d of %d", l, len(ack))
	}
	if binary.BigEndian.Uint16(ack[headerLen+initLen:]) != cookieType {
		t.Fatal("no State Cookie")
	}
	sum := binary.LittleEndian.Uint32(ack[8:])
	binary.LittleEndian.PutUint32(ack[8:], 0)
	if crc32.Checksum(ack, castagnoli) != sum {
		t.Fatal("checksum")
	}
}

func TestSctpOfSkipsTheIPv4Header(t *testing.T) {
	pkt := append([]byte{0x46, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, initChunk(1, 2, 0, chunkInit, 3, nil)...)
	p, ok := sctpOf(pkt, net.IPv4zero)
	if !ok || binary.BigEndian.Uint16(p[2:]) != 2 {
		t.Fatalf("%v % x", ok, p)
	}
	if _, ok := sctpOf(pkt[:22], net.IPv4zero); ok {
		t.Fatal("a truncated packet parsed")
	}
}

// Only a porter asked for SCTP alone is taken over; anything else stays upstream's.
func TestSctpOnlyPorts(t *testing.T) {
	if p := sctpOnlyPorts([]string{"PATH=/bin", "SERVE_SCTP_PORT_9003=foo"}); len(p) != 1 || p[0] != 9003 {
		t.Fatalf("%v", p)
	}
	for _, env := range [][]string{
		{"SERVE_SCTP_PORT_9003=foo", "SERVE_PORT_80=foo"},
		{"SERVE_UDP_PORT_53=foo", "SERVE_SCTP_PORT_9003=foo"},
		{"SERVE_SCTP_PORT_x=foo"},
		{"PATH=/bin"},
	} {
		if p := sctpOnlyPorts(env); p != nil {
			t.Fatalf("%v: %v", env, p)
		}
	}
}
