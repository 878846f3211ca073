package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"forge-manager/internal/testenv"
)

func runCmd(t *testing.T, e env, cmd string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{cmd}, e.lookup, &out, &errOut)
	return out.String() + errOut.String(), err
}

func TestInitPutsCredentialsInPlace(t *testing.T) {
	old := syscall.Umask(0) // the mode must not depend on the umask
	defer syscall.Umask(old)
	e := keyEnv(t, t.TempDir())
	os.WriteFile(e["HEARTBEAT_FILE"], []byte("old"), 0o644)
	for i := 0; i < 2; i++ { // idempotent
		start := time.Now()
		out, err := runCmd(t, e, "init")
		if err != nil {
			t.Fatalf("init run %d: %v\n%s", i, err, out)
		}
		t.Logf("init run %d took %s", i, time.Since(start))
		for _, v := range []string{"TARGET_KES_KEY", "TARGET_VRF_KEY", "TARGET_OP_CERT"} {
			st, err := os.Stat(e[v])
			if err != nil {
				t.Fatalf("%s: %v", v, err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Errorf("%s mode %v; want 0600", v, st.Mode().Perm())
			}
			src := strings.Replace(v, "TARGET", "SOURCE", 1)
			a, _ := os.ReadFile(e[v])
			b, _ := os.ReadFile(e[src])
			if !bytes.Equal(a, b) {
				t.Errorf("%s differs from %s", v, src)
			}
		}
		if b, _ := os.ReadFile(e["HEARTBEAT_FILE"]); !strings.Contains(string(b), `"boot":true`) || !strings.Contains(string(b), e["TARGET_VRF_KEY"]) {
			t.Errorf("heartbeat after init %q; want the boot record naming the files", b)
		}
		st, err := os.Stat(e["DEADMAN_BINARY"])
		if err != nil || st.Mode().Perm() != 0o755 {
			t.Errorf("dead-man binary: %v %v", st, err)
		}
		if leaksKey(out) {
			t.Errorf("init output shows key bytes: %s", out)
		}
		entries, _ := os.ReadDir(filepath.Dir(e["TARGET_KES_KEY"]))
		for _, en := range entries {
			if strings.Contains(en.Name(), ".tmp-") {
				t.Errorf("temporary file left behind: %s", en.Name())
			}
		}
	}
}

func TestInitRejectsBadSources(t *testing.T) {
	tests := []struct {
		name, file string
		content    []byte
		want       string
	}{
		{"missing", "vrf.skey", nil, "SOURCE_VRF_KEY="},
		{"empty", "kes.skey", []byte{}, "file is empty"},
		{"not json", "node.cert", []byte("garbage secret"), "not a cardano text envelope"},
		{"kes key in the vrf slot", "vrf.skey", envelope("KesSigningKey_ed25519_kes_2^6", "secret"), "SOURCE_VRF_KEY=" /* and */},
		{"unknown type", "kes.skey", envelope("PaymentSigningKeyShelley_ed25519", "secret"), `holds an envelope of type "PaymentSigningKeyShelley_ed25519", want a KesSigningKey`},
		{"bad hex", "node.cert", []byte(`{"type":"NodeOperationalCertificate","cborHex":"zz-secret"}`), "cborHex is empty or not hex"},
		{"too large", "kes.skey", bytes.Repeat([]byte("a"), maxEnvelope+1), "not a key file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			e := keyEnv(t, dir)
			path := filepath.Join(dir, "secrets", tc.file)
			os.Remove(path)
			if tc.content != nil {
				os.WriteFile(path, tc.content, 0o400)
			}
			out, err := runCmd(t, e, "init")
			if err == nil || exitCode(err) != 1 {
				t.Fatalf("got %v; want exit 1", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") || leaksKey(msg+out) {
				t.Errorf("error %q: want one line containing %q and no key bytes", msg, tc.want)
			}
			for _, v := range []string{"TARGET_KES_KEY", "TARGET_VRF_KEY", "TARGET_OP_CERT"} {
				if _, err := os.Stat(e[v]); err == nil {
					t.Errorf("%s written although a source is bad", v)
				}
			}
		})
	}
	t.Run("kes in vrf names both variables", func(t *testing.T) {
		dir := t.TempDir()
		e := keyEnv(t, dir)
		putSecret(t, filepath.Join(dir, "secrets", "vrf.skey"), envelope("KesSigningKey_ed25519_kes_2^6", "secret"))
		_, err := runCmd(t, e, "init")
		if err == nil || !strings.Contains(err.Error(), "SOURCE_VRF_KEY") || !strings.Contains(err.Error(), "SOURCE_KES_KEY") {
			t.Errorf("got %v; want both SOURCE_VRF_KEY and SOURCE_KES_KEY named", err)
		}
	})
}

// leaksKey tells whether s holds any of the test keys' bytes: the hex of the
// markers in testSecrets, or the raw text of the broken files above.
// pathInText is an absolute path in a message.
var pathInText = regexp.MustCompile(`/[^\s:"]*`)

func leaksKey(s string) bool {
	// Paths first: a temporary directory's random name can hold "5820".
	s = pathInText.ReplaceAllString(s, "PATH")
	for _, m := range []string{"736563726574", "garbage secret", "zz-secret", "5820"} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

func TestInitRelayWritesNothing(t *testing.T) {
	e := keyEnv(t, t.TempDir())
	e["APPLICATION_TYPE"] = "relay"
	if _, err := runCmd(t, e, "init"); err != nil {
		t.Fatal(err)
	}
	if anyPresent(e["TARGET_KES_KEY"], e["TARGET_VRF_KEY"], e["TARGET_OP_CERT"]) {
		t.Error("init wrote credentials for a relay")
	}
}

// TestWriteAtomic is invariant 8: a private temporary file, renamed whole
// into place; a failed write leaves the old file untouched.
func TestWriteAtomic(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := t.TempDir()
	path := filepath.Join(dir, "kes.skey")
	if err := writeAtomic(path, []byte("v1"), 0o600); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v; want 0600", st.Mode().Perm())
	}
	// A failure before the rename leaves the previous content.
	os.Chmod(dir, 0o500)
	if os.Geteuid() != 0 {
		if err := writeAtomic(path, []byte("v2"), 0o600); err == nil {
			t.Error("write into a read-only directory succeeded")
		}
		if b, _ := os.ReadFile(path); string(b) != "v1" {
			t.Errorf("failed write changed the file to %q", b)
		}
	}
	os.Chmod(dir, 0o700)
	// A directory where the file goes: rename fails, nothing partial stays.
	os.Remove(path)
	os.Mkdir(path, 0o700)
	os.WriteFile(filepath.Join(path, "x"), nil, 0o600)
	if err := writeAtomic(path, []byte("v3"), 0o600); err == nil {
		t.Error("write over a non-empty directory succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("left behind: %v", entries)
	}
}

// TestTemporaryFileIsPrivate watches the directory while writing and never
// sees a file with group or other permission bits.
func TestTemporaryFileIsPrivate(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := t.TempDir()
	stop := make(chan struct{})
	seen := make(chan string, 1)
	go func() {
		for {
			select {
			case <-stop:
				close(seen)
				return
			default:
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if info, err := e.Info(); err == nil && info.Mode().Perm()&0o077 != 0 {
					seen <- e.Name() + " " + info.Mode().String()
					close(seen)
					return
				}
			}
		}
	}()
	// 400 writes: a file created 0644 and chmodded after was seen in 5
	// runs of 5 (each write syncs, so more only costs time).
	for i := 0; i < 400; i++ {
		writeAtomic(filepath.Join(dir, "vrf.skey"), []byte("key"), 0o600)
	}
	close(stop)
	if s, ok := <-seen; ok && s != "" {
		t.Errorf("a credential file was visible with group/other bits: %s", s)
	}
}

func TestEnsureAndRemove(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.cert")
	if wrote, err := ensureFile(path, []byte("a")); !wrote || err != nil {
		t.Fatalf("first ensure: %v %v", wrote, err)
	}
	if wrote, _ := ensureFile(path, []byte("a")); wrote {
		t.Error("ensure rewrote an unchanged file")
	}
	os.Chmod(path, 0o644)
	if wrote, _ := ensureFile(path, []byte("a")); !wrote {
		t.Error("ensure kept a file with the wrong mode")
	}
	if wrote, _ := ensureFile(path, []byte("b")); !wrote {
		t.Error("ensure kept changed content")
	}
	if removed, err := removeFile(path); !removed || err != nil {
		t.Errorf("remove: %v %v", removed, err)
	}
	if removed, err := removeFile(path); removed || err != nil {
		t.Errorf("remove of a missing file: %v %v", removed, err)
	}
	os.Mkdir(path, 0o700)
	if _, err := removeFile(path); err == nil {
		t.Error("remove deleted a directory")
	}
}

// TestDeadmanFailsClosed: the node container's probe fails while the
// credentials the heartbeat names are present, or the node may be forging,
// and the heartbeat ran out, is missing or unreadable. The probe runs with
// the node container's environment: the files come from the heartbeat.
func TestDeadmanFailsClosed(t *testing.T) {
	tests := []struct {
		name      string
		creds     string // "": none; "env": at the env's targets; "other": only where the heartbeat says
		heartbeat string // "": none; "boot", "valid", "expired", "expired-forging", "garbage"
		fail      bool
	}{
		{"init's boot record, no sidecar yet", "env", "boot", false},
		{"no heartbeat at all with credentials", "env", "", true},
		{"no heartbeat, no credentials", "", "", false},
		{"no credentials, expired", "", "expired", false},
		{"current heartbeat", "env", "valid", false},
		{"expired heartbeat with credentials", "env", "expired", true},
		{"unreadable heartbeat with credentials", "env", "garbage", true},
		{"credentials where only the heartbeat says, expired", "other", "expired", true},
		{"no credentials but the node may forge, expired", "", "expired-forging", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			e := keyEnv(t, dir)
			files := []string{e["TARGET_KES_KEY"], e["TARGET_VRF_KEY"], e["TARGET_OP_CERT"]}
			if tc.creds == "other" {
				os.Mkdir(filepath.Join(dir, "elsewhere"), 0o700)
				files = []string{filepath.Join(dir, "elsewhere", "kes.skey")}
			}
			if tc.creds != "" {
				os.WriteFile(files[0], []byte("k"), 0o600)
			}
			hb := heartbeat{path: e["HEARTBEAT_FILE"], files: files, clock: boottime}
			switch tc.heartbeat {
			case "boot":
				c, _ := loadConfig(e.lookup, "init")
				os.WriteFile(e["HEARTBEAT_FILE"], bootHeartbeat(c), 0o644)
			case "valid":
				hb.write(beat{valid: 10 * time.Second, mayForge: true})
			case "expired":
				hb.write(beat{valid: -time.Millisecond})
			case "expired-forging":
				hb.write(beat{valid: -time.Millisecond, mayForge: true})
			case "garbage":
				os.WriteFile(e["HEARTBEAT_FILE"], []byte("{"), 0o644)
			}
			_, err := runCmd(t, e, "deadman")
			if (err != nil) != tc.fail {
				t.Errorf("deadman error %v; want failure %v", err, tc.fail)
			}
		})
	}
}

// TestInvariant8TargetsAreNeverReadThrough: a FIFO or a link planted at a
// target is inspected without following and without blocking, and
// replaced.
func TestInvariant8TargetsAreNeverReadThrough(t *testing.T) {
	dir := t.TempDir()
	data := []byte("key")
	fifo, link, real := filepath.Join(dir, "kes.skey"), filepath.Join(dir, "vrf.skey"), filepath.Join(dir, "real")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(real, data, 0o600)
	os.Symlink(real, link)
	done := make(chan bool)
	go func() { done <- matches(fifo, data) || matches(link, data) }()
	select {
	case m := <-done:
		if m {
			t.Error("a FIFO or a symlink at a target counts as the current credential")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("inspecting a FIFO at a target blocked")
	}
	for _, p := range []string{fifo, link} {
		if wrote, err := ensureFile(p, data); !wrote || err != nil {
			t.Errorf("%s: ensure %v %v; want it replaced", p, wrote, err)
		}
		if st, err := os.Lstat(p); err != nil || !st.Mode().IsRegular() {
			t.Errorf("%s: %v %v; want a regular file", p, st.Mode(), err)
		}
	}
	if b, _ := os.ReadFile(real); string(b) != "key" {
		t.Errorf("the link's target was written through: %q", b)
	}
}

// TestInitAllOrNothing: init writes nothing new when any part fails, here
// the dead-man binary's directory is missing after the keys were staged.
func TestInitAllOrNothing(t *testing.T) {
	dir := t.TempDir()
	e := keyEnv(t, dir)
	e["DEADMAN_BINARY"] = filepath.Join(dir, "missing", "forge-manager")
	os.WriteFile(e["HEARTBEAT_FILE"], []byte("old"), 0o644)
	if _, err := runCmd(t, e, "init"); err == nil || !strings.Contains(err.Error(), "DEADMAN_BINARY") {
		t.Fatalf("init: %v; want a DEADMAN_BINARY error", err)
	}
	if anyPresent(e["TARGET_KES_KEY"], e["TARGET_VRF_KEY"], e["TARGET_OP_CERT"]) {
		t.Error("init wrote credentials although it failed")
	}
	if b, _ := os.ReadFile(e["HEARTBEAT_FILE"]); string(b) != "old" {
		t.Errorf("init replaced the heartbeat although it failed: %q", b)
	}
	entries, _ := os.ReadDir(filepath.Dir(e["TARGET_KES_KEY"]))
	for _, en := range entries {
		if strings.Contains(en.Name(), ".tmp-") || strings.Contains(en.Name(), ".bak-") {
			t.Errorf("left behind: %s", en.Name())
		}
	}
}

// TestCommitRollsBack: a rename that fails puts back what the ones before
// it replaced.
func TestCommitRollsBack(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	os.WriteFile(a, []byte("old a"), 0o600)
	sa, err := stage(a, 0o600, writeBytes([]byte("new a")))
	if err != nil {
		t.Fatal(err)
	}
	sb, err := stage(b, 0o600, writeBytes([]byte("new b")))
	if err != nil {
		t.Fatal(err)
	}
	os.Mkdir(b, 0o700) // b's rename now fails: a directory is there
	os.WriteFile(filepath.Join(b, "x"), nil, 0o600)
	if err := commit([]*staged{sa, sb}); err == nil {
		t.Fatal("commit over a non-empty directory succeeded")
	}
	if got, _ := os.ReadFile(a); string(got) != "old a" {
		t.Errorf("a after a failed commit: %q; want the old content back", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("left behind: %v", entries)
	}
}

// TestInitRefusesAnotherPoolsKeys: with POOL_ID a pool id, the keys must
// prove it; init (start-up) refuses another pool's keys, naming both ids,
// and writes nothing. The keys' own id, in either spelling, passes.
func TestInitRefusesAnotherPoolsKeys(t *testing.T) {
	dir := t.TempDir()
	e := keyEnv(t, dir)
	cert, _ := os.ReadFile(e["SOURCE_OP_CERT"])
	_, raw, _ := envelopeOf(cert)
	oc, _ := parseOpCert(raw)
	mine := keySet{pool: hex.EncodeToString(oc.poolID())}
	other := testenv.Keys(testenv.KeySpec{Cold: "another pool"})
	_, rawOther, _ := envelopeOf(other["node.cert"])
	ocOther, _ := parseOpCert(rawOther)
	theirs := keySet{pool: hex.EncodeToString(ocOther.poolID())}

	e["POOL_ID"] = theirs.poolBech32()
	_, err := runCmd(t, e, "init")
	if err == nil || !strings.Contains(err.Error(), theirs.pool) || !strings.Contains(err.Error(), mine.poolBech32()) {
		t.Fatalf("init with another pool's POOL_ID: %v; want both ids named", err)
	}
	if _, err := os.Stat(e["TARGET_OP_CERT"]); err == nil {
		t.Error("credentials written although the keys disprove POOL_ID")
	}
	for _, id := range []string{mine.pool, mine.poolBech32(), "my-pool"} {
		e["POOL_ID"] = id
		if _, err := runCmd(t, e, "init"); err != nil {
			t.Errorf("POOL_ID=%s: %v", id, err)
		}
	}
}

// secretVolume lays dir out as the kubelet does a Secret volume: files in
// generation gen, ..data linked to it, each name linked to ..data/name.
func secretVolume(t *testing.T, dir, gen string, files map[string][]byte) {
	t.Helper()
	os.MkdirAll(filepath.Join(dir, gen), 0o755)
	for name, b := range files {
		os.WriteFile(filepath.Join(dir, gen, name), b, 0o400)
		os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name))
	}
	os.Symlink(gen, filepath.Join(dir, "..data_tmp"))
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

// volumeCredentials are the three credentials with their sources in dir,
// a Secret volume.
func volumeCredentials(t *testing.T, dir string) []credential {
	t.Helper()
	e := keyEnv(t, t.TempDir())
	c, err := loadConfig(env{"SOURCE_KES_KEY": filepath.Join(dir, "kes.skey"), "SOURCE_VRF_KEY": filepath.Join(dir, "vrf.skey"),
		"SOURCE_OP_CERT": filepath.Join(dir, "node.cert"), "TARGET_KES_KEY": e["TARGET_KES_KEY"], "TARGET_VRF_KEY": e["TARGET_VRF_KEY"],
		"TARGET_OP_CERT": e["TARGET_OP_CERT"]}.lookup, "init")
	if err != nil {
		t.Fatal(err)
	}
	return credentials(c)
}

// TestSecretReadFromOneGeneration: the three files are read through one
// resolution of ..data, so every path is inside one generation's
// directory, never through the per-file links a swap can change between
// two reads; a generation removed under the read is read again from the
// new one.
func TestSecretReadFromOneGeneration(t *testing.T) {
	dir := t.TempDir()
	creds := volumeCredentials(t, dir)
	a, b := testenv.FakeKeys("gen-a"), testenv.FakeKeys("gen-b")
	secretVolume(t, dir, "..2026_12_01_a", a)
	for i, p := range generationPaths(creds) {
		if filepath.Dir(p) != filepath.Join(dir, "..2026_12_01_a") {
			t.Errorf("%s read at %s, not inside the generation", creds[i].sourceVar, p)
		}
	}
	paths := generationPaths(creds)
	secretVolume(t, dir, "..2026_12_01_b", b) // the kubelet swaps ..data
	os.RemoveAll(filepath.Join(dir, "..2026_12_01_a"))
	if _, _, err := readGeneration(creds, paths); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("reading the removed generation: %v; want not found", err)
	}
	data, _, err := readSources(creds)
	if err != nil || !bytes.Equal(data[0], b["kes.skey"]) || !bytes.Equal(data[2], b["node.cert"]) {
		t.Fatalf("after the swap: %v; want generation b whole", err)
	}
}

// TestSecretReadDuringSwaps: the kubelet swaps generations every 5 ms
// (removing the old one each time) while the sources are read 3000 times:
// every read is one whole generation, and none fails.
func TestSecretReadDuringSwaps(t *testing.T) {
	dir := t.TempDir()
	creds := volumeCredentials(t, dir)
	gens := []map[string][]byte{testenv.FakeKeys("gen-a"), testenv.FakeKeys("gen-b")}
	secretVolume(t, dir, "..gen-0", gens[0])
	done := make(chan struct{})
	swapped := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-done:
				swapped <- n
				return
			case <-time.After(5 * time.Millisecond):
			}
			n++
			secretVolume(t, dir, fmt.Sprintf("..gen-%d", n), gens[n%2])
			os.RemoveAll(filepath.Join(dir, fmt.Sprintf("..gen-%d", n-1)))
		}
	}()
	var failed, mixed int
	for range 3000 {
		data, _, err := readSources(creds)
		switch {
		case err != nil:
			failed++
		case !bytes.Equal(data[0], gens[0]["kes.skey"]) && !bytes.Equal(data[0], gens[1]["kes.skey"]):
			mixed++
		default:
			g := gens[0]
			if !bytes.Equal(data[0], g["kes.skey"]) {
				g = gens[1]
			}
			if !bytes.Equal(data[1], g["vrf.skey"]) || !bytes.Equal(data[2], g["node.cert"]) {
				mixed++
			}
		}
	}
	close(done)
	n := <-swapped
	if failed > 0 || mixed > 0 || n < 10 {
		t.Errorf("%d reads failed and %d mixed two generations, over %d swaps", failed, mixed, n)
	}
}
