package main

// What the credential set proves (SPEC 12, docs/keys.md): the operational
// certificate parsed exactly, its cold-key signature, the pool id it
// belongs to, and whether the KES key is the one it certifies. Every
// derivation here is proven on a real set made by Cardano's tools
// (testdata/cardano), which is why a failed check may refuse keys.

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Sizes of the raw keys (cardano-base): an Ed25519 verification key and
// signature, a Sum6KES signing key, a Praos VRF signing key.
const (
	vkeySize   = 32
	sigSize    = 64
	kesSKSize  = 608
	vrfSKSize  = 64
	poolIDSize = 28
	// certBound bounds the counter and the start period: real ones are small
	// (a counter goes up by one per rotation, a period is 36 hours), and
	// 2^32 periods is half a million years.
	certBound = 1<<32 - 1
)

// opCert is a NodeOperationalCertificate: the KES verification key it
// certifies (hot), the issue counter, the KES period it starts at, the
// cold key's signature over the three, and the cold verification key.
type opCert struct {
	hot       []byte
	counter   uint64
	kesPeriod uint64
	sigma     []byte
	cold      []byte
}

// cbor reads the few shapes a certificate is made of; every length is
// definite and every read is bounds-checked.
type cbor struct{ b []byte }

func (c *cbor) head() (major byte, arg uint64, err error) {
	if len(c.b) == 0 {
		return 0, 0, errors.New("truncated")
	}
	major, info := c.b[0]>>5, c.b[0]&0x1f
	c.b = c.b[1:]
	n := map[byte]int{24: 1, 25: 2, 26: 4, 27: 8}[info]
	switch {
	case info < 24:
		return major, uint64(info), nil
	case n == 0:
		return 0, 0, fmt.Errorf("indefinite or reserved length (additional info %d)", info)
	case len(c.b) < n:
		return 0, 0, errors.New("truncated")
	}
	var buf [8]byte
	copy(buf[8-n:], c.b[:n])
	c.b = c.b[n:]
	return major, binary.BigEndian.Uint64(buf[:]), nil
}

func (c *cbor) array(n uint64, what string) error {
	major, arg, err := c.head()
	if err == nil && (major != 4 || arg != n) {
		err = fmt.Errorf("want an array of %d", n)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func (c *cbor) bytes(n int, what string) ([]byte, error) {
	major, arg, err := c.head()
	switch {
	case err != nil:
	case major != 2 || arg != uint64(n):
		err = fmt.Errorf("want a byte string of %d bytes", n)
	case len(c.b) < n:
		err = errors.New("truncated")
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	out := c.b[:n]
	c.b = c.b[n:]
	return out, nil
}

func (c *cbor) uint(what string) (uint64, error) {
	major, arg, err := c.head()
	switch {
	case err != nil:
	case major != 0:
		err = errors.New("want an unsigned integer")
	case arg > certBound:
		err = fmt.Errorf("%d is beyond %d", arg, uint64(certBound))
	}
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	return arg, nil
}

// parseOpCert reads [[hot_vkey, counter, kes_period, sigma], cold_vkey]
// (cardano-ledger encodeOCertFields) and nothing more.
func parseOpCert(b []byte) (opCert, error) {
	c := &cbor{b}
	var oc opCert
	var err error
	steps := []func() error{
		func() error { return c.array(2, "certificate") },
		func() error { return c.array(4, "certificate body") },
		func() (e error) { oc.hot, e = c.bytes(vkeySize, "KES verification key"); return },
		func() (e error) { oc.counter, e = c.uint("issue counter"); return },
		func() (e error) { oc.kesPeriod, e = c.uint("KES period"); return },
		func() (e error) { oc.sigma, e = c.bytes(sigSize, "cold key signature"); return },
		func() (e error) { oc.cold, e = c.bytes(vkeySize, "cold verification key"); return },
	}
	for _, step := range steps {
		if err = step(); err != nil {
			return opCert{}, err
		}
	}
	if len(c.b) != 0 {
		return opCert{}, fmt.Errorf("%d bytes after the certificate", len(c.b))
	}
	return oc, nil
}

// signed is what the cold key signs (OCertSignable): the hot key, then the
// counter and the period as big-endian 64-bit words.
func (oc opCert) signed() []byte {
	msg := make([]byte, 0, vkeySize+16)
	msg = append(msg, oc.hot...)
	msg = binary.BigEndian.AppendUint64(msg, oc.counter)
	return binary.BigEndian.AppendUint64(msg, oc.kesPeriod)
}

func (oc opCert) signatureValid() bool {
	return ed25519.Verify(ed25519.PublicKey(oc.cold), oc.signed(), oc.sigma)
}

// poolID is BLAKE2b-224 of the cold verification key.
func (oc opCert) poolID() []byte { return blake2bSum(poolIDSize, oc.cold) }

// kesVerificationKey derives a Sum6KES signing key's verification key: the
// BLAKE2b-256 of the two halves' keys it ends with (cardano-base SumKES).
func kesVerificationKey(sk []byte) []byte { return blake2bSum(vkeySize, sk[len(sk)-2*vkeySize:]) }

// rawKey reads a text envelope's payload: a byte string of exactly size.
func rawKey(cborBytes []byte, size int, what string) ([]byte, error) {
	c := &cbor{cborBytes}
	b, err := c.bytes(size, what)
	if err == nil && len(c.b) != 0 {
		err = fmt.Errorf("%s: %d bytes after the key", what, len(c.b))
	}
	return b, err
}

// keySet is what a validated credential set says: its certificate and the
// pool it proves.
type keySet struct {
	cert opCert
	pool string // hex of the pool id
}

// checkKeySet validates the three payloads together (KES, VRF, opcert, in
// the order of credentials): sizes, the certificate's signature, the KES
// key against the certificate, and POOL_ID against the proven pool id.
// Errors name the variables and never carry key bytes.
func checkKeySet(kes, vrf, cert []byte, poolID, poolHex string) (keySet, error) {
	sk, err := rawKey(kes, kesSKSize, "KES signing key")
	if err != nil {
		return keySet{}, fmt.Errorf("SOURCE_KES_KEY: %w (want a Sum6 KES key, %d bytes)", err, kesSKSize)
	}
	if _, err := rawKey(vrf, vrfSKSize, "VRF signing key"); err != nil {
		return keySet{}, fmt.Errorf("SOURCE_VRF_KEY: %w", err)
	}
	oc, err := parseOpCert(cert)
	if err != nil {
		return keySet{}, fmt.Errorf("SOURCE_OP_CERT: not an operational certificate: %w", err)
	}
	ks := keySet{cert: oc, pool: hex.EncodeToString(oc.poolID())}
	switch {
	case !oc.signatureValid():
		return keySet{}, fmt.Errorf("SOURCE_OP_CERT: the cold key's signature does not verify (pool %s, counter %d, KES period %d): the certificate is corrupt or was edited",
			ks.poolBech32(), oc.counter, oc.kesPeriod)
	case !bytes.Equal(kesVerificationKey(sk), oc.hot):
		return keySet{}, fmt.Errorf("SOURCE_KES_KEY does not belong to SOURCE_OP_CERT: the certificate (counter %d, KES period %d) certifies another KES key; issue a certificate for this key or mount the matching one",
			oc.counter, oc.kesPeriod)
	}
	for _, id := range [][2]string{{"POOL_ID", poolID}, {"POOL_ID_HEX", poolHex}} {
		if want, ok := poolIDHex(id[1]); ok && want != ks.pool {
			return keySet{}, fmt.Errorf("%s=%q is pool %s, but the keys are pool %s (%s): these are another pool's keys, or %s is wrong",
				id[0], id[1], want, ks.poolBech32(), ks.pool, id[0])
		}
	}
	return ks, nil
}

// poolIDHex reads POOL_ID as a pool id, bech32 (pool1..., either case) or
// 56 hex digits; any other string is a plain name and proves nothing (the
// configuration refuses a pool1... that does not decode).
func poolIDHex(v string) (string, bool) {
	if len(v) == 2*poolIDSize {
		if b, err := hex.DecodeString(v); err == nil {
			return hex.EncodeToString(b), true
		}
	}
	if strings.ToUpper(v) == v {
		v = strings.ToLower(v) // BIP-173: all upper case is as valid as all lower
	}
	if hrp, data, err := bech32Decode(v); err == nil && hrp == "pool" && len(data) == poolIDSize {
		return hex.EncodeToString(data), true
	}
	return "", false
}

func (ks keySet) poolBech32() string {
	b, _ := hex.DecodeString(ks.pool)
	return bech32Encode("pool", b)
}

// Bech32 (BIP-173), as Cardano writes pool ids.
const bech32Charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"

func bech32Polymod(values []byte) uint32 {
	gen := [5]uint32{0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3}
	chk := uint32(1)
	for _, v := range values {
		top := chk >> 25
		chk = (chk&0x1ffffff)<<5 ^ uint32(v)
		for i := range gen {
			if (top>>i)&1 == 1 {
				chk ^= gen[i]
			}
		}
	}
	return chk
}

func bech32HRP(hrp string) []byte {
	out := make([]byte, 0, 2*len(hrp)+1)
	for i := range len(hrp) {
		out = append(out, hrp[i]>>5)
	}
	out = append(out, 0)
	for i := range len(hrp) {
		out = append(out, hrp[i]&31)
	}
	return out
}

// regroup converts between 8-bit bytes and 5-bit groups; from 5 to 8 the
// padding must be zero bits.
func regroup(in []byte, from, to uint, pad bool) ([]byte, bool) {
	var acc, bits uint
	var out []byte
	for _, v := range in {
		acc = acc<<from | uint(v)
		for bits += from; bits >= to; {
			bits -= to
			out = append(out, byte(acc>>bits)&(1<<to-1))
		}
	}
	if pad && bits > 0 {
		out = append(out, byte(acc<<(to-bits))&(1<<to-1))
	} else if !pad && (bits >= from || acc&(1<<bits-1) != 0) {
		return nil, false
	}
	return out, true
}

func bech32Encode(hrp string, data []byte) string {
	groups, _ := regroup(data, 8, 5, true)
	values := append(bech32HRP(hrp), groups...)
	pm := bech32Polymod(append(values, 0, 0, 0, 0, 0, 0)) ^ 1
	var sb strings.Builder
	sb.WriteString(hrp + "1")
	for _, g := range groups {
		sb.WriteByte(bech32Charset[g])
	}
	for i := range 6 {
		sb.WriteByte(bech32Charset[(pm>>(5*(5-i)))&31])
	}
	return sb.String()
}

func bech32Decode(s string) (string, []byte, error) {
	if strings.ToLower(s) != s || len(s) > 90 {
		return "", nil, errors.New("not lower-case bech32 of at most 90 characters")
	}
	sep := strings.LastIndexByte(s, '1')
	if sep < 1 || len(s)-sep-1 < 6 {
		return "", nil, errors.New("no separator or checksum")
	}
	hrp := s[:sep]
	values := bech32HRP(hrp)
	for i := sep + 1; i < len(s); i++ {
		v := strings.IndexByte(bech32Charset, s[i])
		if v < 0 {
			return "", nil, fmt.Errorf("character %q is not bech32", s[i])
		}
		values = append(values, byte(v))
	}
	if bech32Polymod(values) != 1 {
		return "", nil, errors.New("checksum does not match")
	}
	data, ok := regroup(values[len(bech32HRP(hrp)):len(values)-6], 5, 8, false)
	if !ok {
		return "", nil, errors.New("bad padding")
	}
	return hrp, data, nil
}
