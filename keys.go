package main

// Credential files: validating the three sources, writing them into place
// atomically and privately, removing them, and the init subcommand.
//
// The rules come from how cardano-node reads them (SPEC 2): a missing file
// disables forging on SIGHUP, a corrupt one changes nothing. So a file is
// never truncated or written in place: a temporary file created 0600 in the
// same directory is written, synced and renamed over the target, and the
// directory is synced. Key bytes never appear in errors or logs.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// maxEnvelope bounds a credential file: real ones are under 1 KiB (a KES
// key envelope is about 1.3 KiB of hex); anything near 64 KiB is not a key.
const maxEnvelope = 64 << 10

// credential is one of the three files cardano-node forges with.
type credential struct {
	source, target       string
	sourceVar, targetVar string
	kind                 string // the text envelope's type begins with this
}

func credentials(c *config) []credential {
	return []credential{
		{c.SourceKES, c.TargetKES, "SOURCE_KES_KEY", "TARGET_KES_KEY", "KesSigningKey"},
		{c.SourceVRF, c.TargetVRF, "SOURCE_VRF_KEY", "TARGET_VRF_KEY", "VrfSigningKey"},
		{c.SourceOpCert, c.TargetOpCert, "SOURCE_OP_CERT", "TARGET_OP_CERT", "NodeOperationalCertificate"},
	}
}

// slotOf names the variable that should hold an envelope of the given type,
// so a key in the wrong slot is reported with both variables.
var slotOf = map[string]string{"KesSigningKey": "SOURCE_KES_KEY", "VrfSigningKey": "SOURCE_VRF_KEY", "NodeOperationalCertificate": "SOURCE_OP_CERT"}

// readSources reads and checks all three sources; the bundle's digest tells
// whether the keys changed since the node last loaded them.
func readSources(creds []credential) ([][]byte, string, error) {
	data := make([][]byte, len(creds))
	h := sha256.New()
	for i, cr := range creds {
		b, err := readEnvelope(cr)
		if err != nil {
			return nil, "", err
		}
		data[i] = b
		h.Write(b)
	}
	return data, hex.EncodeToString(h.Sum(nil)), nil
}

// readEnvelope reads one source and checks it is a cardano text envelope of
// the expected kind. Errors name the variable and the file, never contents.
func readEnvelope(cr credential) ([]byte, error) {
	where := fmt.Sprintf("%s=%s", cr.sourceVar, cr.source)
	f, err := os.Open(cr.source)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, plainPathError(err))
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxEnvelope+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, plainPathError(err))
	}
	switch {
	case len(b) == 0:
		return nil, fmt.Errorf("%s: file is empty", where)
	case len(b) > maxEnvelope:
		return nil, fmt.Errorf("%s: larger than %d bytes, not a key file", where, maxEnvelope)
	}
	var env struct {
		Type    string `json:"type"`
		CBORHex string `json:"cborHex"`
	}
	if json.Unmarshal(b, &env) != nil {
		return nil, fmt.Errorf("%s: not a cardano text envelope (want JSON with type and cborHex)", where)
	}
	if !strings.HasPrefix(env.Type, cr.kind) {
		for kind, slot := range slotOf {
			if strings.HasPrefix(env.Type, kind) {
				return nil, fmt.Errorf("%s: holds a %s, want a %s (a %s belongs in %s)", where, kind, cr.kind, kind, slot)
			}
		}
		return nil, fmt.Errorf("%s: holds an envelope of type %q, want a %s", where, truncate(env.Type, 64), cr.kind)
	}
	if _, err := hex.DecodeString(env.CBORHex); err != nil || env.CBORHex == "" {
		return nil, fmt.Errorf("%s: cborHex is empty or not hex", where)
	}
	return b, nil
}

// plainPathError keeps the operation and the reason but drops the path (the
// caller names the variable and path once).
func plainPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}

// writeAtomic puts data at path with the given mode, all or nothing: a
// temporary file created with the final mode (0600 for keys, so never
// readable by others, even for an instant), written, fsynced, renamed over
// path with renameat, then the directory fsynced so the rename survives a
// crash. A failure leaves the previous file as it was.
func writeAtomic(path string, data []byte, mode uint32) error {
	return writeAtomicWith(path, mode, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}

// writeAtomicWith is writeAtomic with the content written by fill.
func writeAtomicWith(path string, mode uint32, fill func(*os.File) error) error {
	dir, base := filepath.Split(path)
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", dir, err)
	}
	defer unix.Close(dfd)
	tmp := fmt.Sprintf(".%s.tmp-%d-%d", base, os.Getpid(), time.Now().UnixNano())
	fd, err := unix.Openat(dfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC|unix.O_NOFOLLOW, mode)
	if err != nil {
		return fmt.Errorf("create temporary file in %s: %w", dir, err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	// The umask can only take bits away; Chmod makes the mode exact.
	err = f.Chmod(os.FileMode(mode))
	if err == nil {
		err = fill(f)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat(dfd, tmp, dfd, base)
	}
	if err != nil {
		unix.Unlinkat(dfd, tmp, 0)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := unix.Fsync(dfd); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// ensureFile makes path hold exactly data with mode 0600, rewriting it only
// when it differs. It reports whether it wrote.
func ensureFile(path string, data []byte) (bool, error) {
	if current, err := os.ReadFile(path); err == nil && bytes.Equal(current, data) {
		if st, err := os.Lstat(path); err == nil && st.Mode().IsRegular() && st.Mode().Perm() == 0o600 {
			return false, nil
		}
	}
	return true, writeAtomic(path, data, 0o600)
}

// removeFile unlinks path; a file already gone is fine. It reports whether
// something was removed. A directory at path is an error: to cardano-node
// it is "missing", but it is not ours to delete.
func removeFile(path string) (bool, error) {
	err := unix.Unlink(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.ENOENT):
		return false, nil
	}
	return false, fmt.Errorf("remove %s: %w", path, err)
}

// anyPresent tells whether any of the paths exists (as anything).
func anyPresent(paths ...string) bool {
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			return true
		}
	}
	return false
}

// runInit is the initContainer: validate the three sources, put them in
// place, copy this binary for the dead-man probe, and clear a heartbeat left
// by an earlier incarnation of the pod. A relay or monitoring pod gets no
// keys.
func runInit(c *config, log *slog.Logger) error {
	start := time.Now()
	if c.AppType != appBlockProducer {
		log.Info("no credentials for this application type", "application_type", c.AppType)
		return nil
	}
	creds := credentials(c)
	data, _, err := readSources(creds)
	if err != nil {
		return err
	}
	for i, cr := range creds {
		if _, err := ensureFile(cr.target, data[i]); err != nil {
			return fmt.Errorf("%s: %w", cr.targetVar, err)
		}
	}
	// No sidecar runs yet, so no heartbeat is current; an old one would make
	// the dead-man probe fail against the fresh node.
	if _, err := removeFile(c.HeartbeatFile); err != nil {
		return fmt.Errorf("HEARTBEAT_FILE: %w", err)
	}
	if c.DeadmanBinary != "" {
		if err := installSelf(c.DeadmanBinary); err != nil {
			return fmt.Errorf("DEADMAN_BINARY: %w", err)
		}
	}
	log.Info("credentials in place", "files", 3, "took", time.Since(start).String())
	return nil
}

// installSelf copies the running binary to path (0755), for the node
// container's livenessProbe. Streamed: the binary is 11 MB.
func installSelf(path string) error {
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		return err
	}
	defer self.Close()
	return writeAtomicWith(path, 0o755, func(f *os.File) error {
		_, err := io.Copy(f, self)
		return err
	})
}
