package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"forge-manager/internal/testenv"
)

// realSet is one credential triple of testdata/cardano/bulk-creds-k2.json,
// made by Cardano's tools: the payloads of its three envelopes.
type realSet struct{ cert, vrf, kes []byte }

func realSets(t testing.TB) []realSet {
	t.Helper()
	b, err := os.ReadFile("testdata/cardano/bulk-creds-k2.json")
	if err != nil {
		t.Fatal(err)
	}
	var triples [][]struct {
		Type, CBORHex string
	}
	if err := json.Unmarshal(b, &triples); err != nil {
		t.Fatal(err)
	}
	var out []realSet
	for _, tr := range triples {
		var s realSet
		for _, env := range tr {
			raw, err := hex.DecodeString(env.CBORHex)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case env.Type == "NodeOperationalCertificate":
				s.cert = raw
			case strings.HasPrefix(env.Type, "VrfSigningKey"):
				s.vrf = raw
			case strings.HasPrefix(env.Type, "KesSigningKey"):
				s.kes = raw
			}
		}
		out = append(out, s)
	}
	return out
}

// genesisPools is the pools of the same network's Shelley genesis, written
// by Cardano's tools: pool id -> hash of the VRF verification key.
func genesisPools(t testing.TB) map[string]string {
	b, err := os.ReadFile("testdata/cardano/shelley-genesis.json")
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		Staking struct {
			Pools map[string]struct{ VRF string }
		}
	}
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for id, p := range g.Staking.Pools {
		out[id] = p.VRF
	}
	return out
}

// TestRealKeysProveEveryDerivation: on real keys, the certificate parses,
// its signature verifies, the pool id derived from the cold key and the
// VRF key's hash are the ones the genesis names, and the KES key is the
// one the certificate certifies. Without this no check may refuse keys
// (SPEC 12).
func TestRealKeysProveEveryDerivation(t *testing.T) {
	pools := genesisPools(t)
	sets := realSets(t)
	if len(sets) != 2 || len(pools) != 2 {
		t.Fatalf("%d sets and %d genesis pools, want 2 and 2", len(sets), len(pools))
	}
	for i, s := range sets {
		ks, err := checkKeySet(s.kes, s.vrf, s.cert, "", "")
		if err != nil {
			t.Fatalf("set %d: %v", i, err)
		}
		vrfHash, ok := pools[ks.pool]
		if !ok {
			t.Fatalf("set %d: pool id %s is not in the genesis %v", i, ks.pool, pools)
		}
		vrf, _ := rawKey(s.vrf, vrfSKSize, "VRF")
		if got := hex.EncodeToString(blake2bSum(32, vrf[32:])); got != vrfHash {
			t.Errorf("set %d: VRF key hash %s, genesis says %s", i, got, vrfHash)
		}
		sk, _ := rawKey(s.kes, kesSKSize, "KES")
		if !bytes.Equal(kesVerificationKey(sk), ks.cert.hot) {
			t.Errorf("set %d: KES verification key differs from the certificate's", i)
		}
		if ks.cert.counter != 0 || ks.cert.kesPeriod != 0 {
			t.Errorf("set %d: counter %d, period %d; the fixture's are 0 and 0", i, ks.cert.counter, ks.cert.kesPeriod)
		}
		// POOL_ID as the keys prove it, in both spellings, is accepted.
		for _, id := range []string{ks.pool, ks.poolBech32(), "a-pool-name"} {
			if _, err := checkKeySet(s.kes, s.vrf, s.cert, id, ""); err != nil {
				t.Errorf("set %d: POOL_ID=%s refused: %v", i, id, err)
			}
		}
	}
}

// TestBrokenSetsAreRefused: what the checks refuse, each named.
func TestBrokenSetsAreRefused(t *testing.T) {
	sets := realSets(t)
	a, b := sets[0], sets[1]
	other, _ := checkKeySet(b.kes, b.vrf, b.cert, "", "")
	flip := func(in []byte, i int) []byte {
		out := bytes.Clone(in)
		out[i] ^= 1
		return out
	}
	cases := []struct {
		name          string
		kes, vrf, crt []byte
		poolID, want  string
		poolHex       string
	}{
		{"signature flipped", a.kes, a.vrf, flip(a.cert, 80), "", "signature does not verify", ""},
		{"counter edited", a.kes, a.vrf, flip(a.cert, 36), "", "signature does not verify", ""},
		{"KES key of the other certificate", b.kes, a.vrf, a.cert, "", "does not belong to SOURCE_OP_CERT", ""},
		{"truncated certificate", a.kes, a.vrf, a.cert[:len(a.cert)-1], "", "truncated", ""},
		{"trailing byte", a.kes, a.vrf, append(bytes.Clone(a.cert), 0), "", "1 bytes after the certificate", ""},
		{"truncated KES key", a.kes[:len(a.kes)-1], a.vrf, a.cert, "", "SOURCE_KES_KEY", ""},
		{"VRF key too short", a.kes, a.vrf[:34], a.cert, "", "SOURCE_VRF_KEY", ""},
		{"POOL_ID of the other pool (hex)", a.kes, a.vrf, a.cert, other.pool, "these are another pool's keys", ""},
		{"POOL_ID of the other pool (bech32)", a.kes, a.vrf, a.cert, other.poolBech32(), "these are another pool's keys", ""},
		{"POOL_ID of the other pool (upper-case bech32)", a.kes, a.vrf, a.cert, strings.ToUpper(other.poolBech32()), "these are another pool's keys", ""},
		{"POOL_ID_HEX of the other pool", a.kes, a.vrf, a.cert, "my-pool", "POOL_ID_HEX=", other.pool},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := checkKeySet(tc.kes, tc.vrf, tc.crt, tc.poolID, tc.poolHex)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), hex.EncodeToString(a.kes[3:20])) {
				t.Errorf("error carries KES key bytes: %v", err)
			}
		})
	}
}

// TestBech32 checks BIP-173's vectors and a mainnet pool id as explorers
// show it.
func TestBech32(t *testing.T) {
	for _, s := range []string{"a12uel5l", "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw"} {
		if _, _, err := bech32Decode(s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	for _, s := range []string{"a12uel5m", "A12UEL5L", "pool1", "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxb"} {
		if _, _, err := bech32Decode(s); err == nil {
			t.Errorf("%s accepted", s)
		}
	}
	const id, hexID = "pool1pu5jlj4q9w9jlxeu370a3c9myx47md5j5m2str0naunn2q3lkdy", "0f292fcaa02b8b2f9b3c8f9fd8e0bb21abedb692a6d5058df3ef2735"
	if got, ok := poolIDHex(id); !ok || got != hexID {
		t.Errorf("poolIDHex(%s) = %s, %v; want %s", id, got, ok, hexID)
	}
	raw, _ := hex.DecodeString(hexID)
	if got := bech32Encode("pool", raw); got != id {
		t.Errorf("bech32Encode = %s, want %s", got, id)
	}
}

// FuzzParseOpCert: the parser never panics, and whatever it accepts it
// stops accepting when cut short or followed by a byte.
func FuzzParseOpCert(f *testing.F) {
	for _, s := range realSets(f) {
		f.Add(s.cert)
	}
	f.Add([]byte{0x82, 0x9f})
	f.Add([]byte{0x82, 0x84, 0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := parseOpCert(b); err != nil {
			return
		}
		for i := range len(b) {
			if _, err := parseOpCert(b[:i]); err == nil {
				t.Fatalf("accepted %x cut to %d bytes", b, i)
			}
		}
		if _, err := parseOpCert(append(bytes.Clone(b), 0)); err == nil {
			t.Fatalf("accepted %x with a trailing byte", b)
		}
	})
}

// TestTestKeysAreRealShaped: the test sets' KES tails and hot keys are the
// real file's, and a set made from them passes every check.
func TestTestKeysAreRealShaped(t *testing.T) {
	for i, s := range realSets(t) {
		if got := hex.EncodeToString(s.kes[len(s.kes)-64:]); got != testenv.KESTails[i] {
			t.Errorf("KESTails[%d] is not the real key's tail", i)
		}
		if got := hex.EncodeToString(kesVerificationKey(s.kes[3:])); got != testenv.KESHot[i] {
			t.Errorf("KESHot[%d] = %s, the real key's is %s", i, testenv.KESHot[i], got)
		}
	}
	set := testenv.Keys(testenv.KeySpec{Marker: "x", Counter: 300, KESPeriod: 1500, KES: 1, CertFor: 1})
	var payload [3][]byte
	for i, name := range []string{"kes.skey", "vrf.skey", "node.cert"} {
		_, payload[i], _ = envelopeOf(set[name])
	}
	ks, err := checkKeySet(payload[0], payload[1], payload[2], "", "")
	if err != nil || ks.cert.counter != 300 || ks.cert.kesPeriod != 1500 {
		t.Errorf("a test set: %v, counter %d, period %d", err, ks.cert.counter, ks.cert.kesPeriod)
	}
}
