package testenv

// Credential sets for tests in the real formats (SPEC 12): a Sum6 KES
// signing key of 608 bytes, a VRF signing key of 64, and an operational
// certificate whose cold-key signature verifies and whose hot key is the
// KES key's. They forge nothing: the cold key is made from a name, and
// the KES keys' leading bytes carry a marker that the no-leak checks look
// for.

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"
)

// KESTails are the last 64 bytes of the two KES signing keys of
// testdata/cardano/bulk-creds-k2.json (made by Cardano's tools), and KESHot
// their verification keys as that file's certificates state them. A KES
// key's verification key depends only on its last 64 bytes, so a test key
// built on a tail is certified by its hot key (opcert_test.go checks both
// against the real file).
var (
	KESTails = [2]string{
		"e6933d94a999afe22a0e8cbf3b8151e07073b343aa6632607f16d578a94e4f3b7050c2ee5e43a9279fd907e3deb75b244cb707423b06d71ab93b60b6fc23fa28",
		"e4500627980856833e796e4435768172cb98b8b33ed5970a92ab3f046050c9f5aeeafa151f9d11b93c425b68cace42f87c51dee5f0a38071b3a8da23743d699c",
	}
	KESHot = [2]string{
		"465dad8c08ecfe932f70bf287903d2d1973ac224f61cd0f9914ed052853f736b",
		"a5ae7caf7a79b7f750d3d6da9a31d6523bdc0b99cc9dbfbdc11122e3ae07e828",
	}
)

// KeySpec describes a credential set.
type KeySpec struct {
	Marker    string // in the KES and VRF keys' bytes, for leak checks
	Cold      string // the cold key is made from this name ("cold" if empty): the pool
	Counter   uint64 // the certificate's issue counter
	KESPeriod uint64 // the certificate's start period
	KES       int    // which KES tail (0 or 1) the KES key ends with
	CertFor   int    // which KES tail's hot key the certificate certifies
}

// SlotZero is when a public network's slot 0 would have been at 1 s slots
// (cardano-node-facts G2): mainnet's Shelley start, 2020-07-29T21:44:51Z,
// less its first slot, 4492800; preprod's, 2022-06-21T00:00:00Z, less
// 86400; preview began with Shelley at 2022-10-25T00:00:00Z. The stand-in
// node's tip follows it.
var SlotZero = map[string]int64{"mainnet": 1596059091 - 4492800, "preprod": 1655769600 - 86400, "preview": 1666656000}

// KESPeriod is the KES period of a public network at t (129600 slots).
func KESPeriod(network string, t time.Time) uint64 {
	return uint64(t.Unix()-SlotZero[network]) / 129600
}

// MainnetKESPeriod is KESPeriod on mainnet.
func MainnetKESPeriod(t time.Time) uint64 { return KESPeriod("mainnet", t) }

// ColdKey is the cold signing key of a KeySpec's Cold name.
func ColdKey(name string) ed25519.PrivateKey {
	if name == "" {
		name = "cold"
	}
	seed := sha256.Sum256([]byte("forge-manager test cold key " + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

// Keys are the three envelopes of s, by file name.
func Keys(s KeySpec) map[string][]byte {
	tail, _ := hex.DecodeString(KESTails[s.KES])
	kes := append(bytes.Repeat([]byte("kes-"+s.Marker+"-"), 544)[:544], tail...)
	vrf := bytes.Repeat([]byte("vrf-"+s.Marker+"-"), 64)[:64]
	hot, _ := hex.DecodeString(KESHot[s.CertFor])
	msg := binary.BigEndian.AppendUint64(append([]byte{}, hot...), s.Counter)
	msg = binary.BigEndian.AppendUint64(msg, s.KESPeriod)
	cold := ColdKey(s.Cold)
	cert := []byte{0x82, 0x84, 0x58, 0x20}
	cert = append(cert, hot...)
	cert = append(cert, cborUint(s.Counter)...)
	cert = append(cert, cborUint(s.KESPeriod)...)
	cert = append(append(cert, 0x58, 0x40), ed25519.Sign(cold, msg)...)
	cert = append(append(cert, 0x58, 0x20), cold.Public().(ed25519.PublicKey)...)
	env := func(typ, desc string, cbor []byte) []byte {
		return []byte(fmt.Sprintf("{\n    \"type\": %q,\n    \"description\": %q,\n    \"cborHex\": \"%x\"\n}\n", typ, desc, cbor))
	}
	return map[string][]byte{
		"kes.skey":  env("KesSigningKey_ed25519_kes_2^6", "KES Signing Key", append([]byte{0x59, 0x02, 0x60}, kes...)),
		"vrf.skey":  env("VrfSigningKey_PraosVRF", "VRF Signing Key", append([]byte{0x58, 0x40}, vrf...)),
		"node.cert": env("NodeOperationalCertificate", "", cert),
	}
}

// cborUint is an unsigned integer in CBOR's shortest form.
func cborUint(n uint64) []byte {
	switch {
	case n < 24:
		return []byte{byte(n)}
	case n < 1<<8:
		return []byte{0x18, byte(n)}
	case n < 1<<16:
		return binary.BigEndian.AppendUint16([]byte{0x19}, uint16(n))
	case n < 1<<32:
		return binary.BigEndian.AppendUint32([]byte{0x1a}, uint32(n))
	}
	return binary.BigEndian.AppendUint64([]byte{0x1b}, n)
}

// FakeKeys is a valid set for mainnet now, with marker in its keys: its
// certificate starts one period (36 h) before the present one, so a test
// clock set to the present hour is inside its window too.
func FakeKeys(marker string) map[string][]byte { return FakeKeysFor(marker, "mainnet") }

// FakeKeysFor is FakeKeys for a public network.
func FakeKeysFor(marker, network string) map[string][]byte {
	return Keys(KeySpec{Marker: marker, KESPeriod: KESPeriod(network, time.Now()) - 1})
}
