package main

import (
	"encoding/hex"
	"testing"
)

// TestBlake2bRFC7693 is the RFC's own: the BLAKE2b-512 vector of "abc"
// (Appendix A) and the self-test of Appendix E, a BLAKE2b-256 over the
// digests of 4 sizes x 6 input lengths, keyed and unkeyed.
func TestBlake2bRFC7693(t *testing.T) {
	abc := "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d17d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923"
	if got := hex.EncodeToString(blake2bSum(64, []byte("abc"))); got != abc {
		t.Errorf("BLAKE2b-512(abc) = %s, want %s", got, abc)
	}
	// selftestSeq is the RFC's deterministic input generator.
	selftestSeq := func(n int, seed uint32) []byte {
		out := make([]byte, n)
		a, b := 0xDEAD4BAD*seed, uint32(1)
		for i := range out {
			t := a + b
			a, b = b, t
			out[i] = byte(t >> 24)
		}
		return out
	}
	var all []byte
	for _, outlen := range []int{20, 32, 48, 64} {
		for _, inlen := range []int{0, 3, 128, 129, 255, 1024} {
			in := selftestSeq(inlen, uint32(inlen))
			all = append(all, blake2bSum(outlen, in)...)
			all = append(all, blake2bKeyed(outlen, selftestSeq(outlen, uint32(outlen)), in)...)
		}
	}
	const want = "c23a7800d98123bd10f506c61e29da5603d763b8bbad2e737f5e765a7bccd475"
	if got := hex.EncodeToString(blake2bSum(32, all)); got != want {
		t.Errorf("RFC 7693 Appendix E self-test: %s, want %s", got, want)
	}
}
