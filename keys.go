package main

// Credential files: validating the three sources, writing them into place
// atomically and privately, removing them, and the init subcommand.
//
// The rules come from how cardano-node reads them (docs/design.md, The node): a missing file
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
	"io/fs"
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

// targets are the paths the node reads the credentials from.
func targets(creds []credential) []string {
	out := make([]string, len(creds))
	for i, cr := range creds {
		out[i] = cr.target
	}
	return out
}

// slotOf names the variable that should hold an envelope of the given type,
// so a key in the wrong slot is reported with both variables.
var slotOf = map[string]string{"KesSigningKey": "SOURCE_KES_KEY", "VrfSigningKey": "SOURCE_VRF_KEY", "NodeOperationalCertificate": "SOURCE_OP_CERT"}

// readSources reads and checks all three sources from one generation of
// their Secret volume; the bundle's digest tells whether the keys changed
// since the node last loaded them. A read that races the kubelet's swap
// (the generation read from is removed) is read again from the new one.
func readSources(creds []credential) ([][]byte, string, error) {
	var err error
	for range 3 {
		var data [][]byte
		var digest string
		data, digest, err = readGeneration(creds, generationPaths(creds))
		if !errors.Is(err, fs.ErrNotExist) {
			return data, digest, err
		}
	}
	return nil, "", err
}

func readGeneration(creds []credential, paths []string) ([][]byte, string, error) {
	data := make([][]byte, len(creds))
	h := sha256.New()
	for i, cr := range creds {
		b, err := readEnvelope(cr, paths[i])
		if err != nil {
			return nil, "", err
		}
		data[i] = b
		h.Write(b)
	}
	return data, hex.EncodeToString(h.Sum(nil)), nil
}

// generationPaths resolves a Secret volume once. There each file is a link
// ..data/<name>, and ..data a link to the current generation's directory,
// which the kubelet swaps atomically on an update: through one resolution
// of ..data the three files come from one generation, never a mix of two
// (a new certificate with the old KES key). A source that is not laid out
// so is read as it is.
func generationPaths(creds []credential) []string {
	gens := map[string]string{}
	out := make([]string, len(creds))
	for i, cr := range creds {
		out[i] = cr.source
		dir, base := filepath.Split(cr.source)
		if l, err := os.Readlink(cr.source); err != nil || l != filepath.Join("..data", base) {
			continue
		}
		gen, ok := gens[dir]
		if !ok {
			g, err := os.Readlink(filepath.Join(dir, "..data"))
			if err != nil || strings.Contains(g, "/") {
				continue
			}
			gen, gens[dir] = g, g
		}
		out[i] = filepath.Join(dir, gen, base)
	}
	return out
}

// readEnvelope reads one source (from path, its file in one generation)
// and checks it is a cardano text envelope of the expected kind. Errors
// name the variable and the file, never contents.
func readEnvelope(cr credential, path string) ([]byte, error) {
	where := fmt.Sprintf("%s=%s", cr.sourceVar, cr.source)
	f, err := os.Open(path)
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
	typ, _, err := envelopeOf(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if !strings.HasPrefix(typ, cr.kind) {
		for kind, slot := range slotOf {
			if strings.HasPrefix(typ, kind) {
				return nil, fmt.Errorf("%s: holds a %s, want a %s (a %s belongs in %s)", where, kind, cr.kind, kind, slot)
			}
		}
		return nil, fmt.Errorf("%s: holds an envelope of type %q, want a %s", where, truncate(typ, 64), cr.kind)
	}
	return b, nil
}

// envelopeOf reads a cardano text envelope: its type and its CBOR payload.
func envelopeOf(b []byte) (string, []byte, error) {
	var env struct {
		Type    string `json:"type"`
		CBORHex string `json:"cborHex"`
	}
	if json.Unmarshal(b, &env) != nil {
		return "", nil, errors.New("not a cardano text envelope (want JSON with type and cborHex)")
	}
	raw, err := hex.DecodeString(env.CBORHex)
	if err != nil || env.CBORHex == "" {
		return "", nil, errors.New("cborHex is empty or not hex")
	}
	return env.Type, raw, nil
}

// validateSources checks what the three envelopes (in the order of
// credentials) prove together (opcert.go): an error here is a set Cardano's
// tools did not make, or another pool's.
func validateSources(data [][]byte, poolID, poolHex string) (keySet, error) {
	var payload [3][]byte
	for i, b := range data {
		_, payload[i], _ = envelopeOf(b) // readEnvelope checked each
	}
	return checkKeySet(payload[0], payload[1], payload[2], poolID, poolHex)
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
// crash. A failure leaves the previous file as it was. Whatever was at path
// (a link, a FIFO) is replaced, never written through.
func writeAtomic(path string, data []byte, mode uint32) error {
	st, err := stage(path, mode, writeBytes(data))
	if err != nil {
		return err
	}
	return commit([]*staged{st})
}

func writeBytes(data []byte) func(*os.File) error {
	return func(f *os.File) error {
		_, err := f.Write(data)
		return err
	}
}

// staged is a file written and synced under a temporary name beside its
// target, not yet renamed into place.
type staged struct {
	path, dir, base, tmp, backup string
	dfd                          int
}

// stage writes a temporary file for path with content from fill. On error
// nothing is left behind.
func stage(path string, mode uint32, fill func(*os.File) error) (*staged, error) {
	dir, base := filepath.Split(path)
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open directory %s: %w", dir, err)
	}
	st := &staged{path: path, dir: dir, base: base, dfd: dfd,
		tmp: fmt.Sprintf(".%s.tmp-%d-%d", base, os.Getpid(), time.Now().UnixNano())}
	fd, err := unix.Openat(dfd, st.tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC|unix.O_NOFOLLOW, mode)
	if err != nil {
		unix.Close(dfd)
		return nil, fmt.Errorf("create temporary file in %s: %w", dir, err)
	}
	f := os.NewFile(uintptr(fd), st.tmp)
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
	if err != nil {
		st.abort()
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return st, nil
}

// abort removes the temporary file (and a backup) of a stage not committed.
func (st *staged) abort() {
	if st.tmp != "" {
		unix.Unlinkat(st.dfd, st.tmp, 0)
	}
	if st.backup != "" {
		unix.Unlinkat(st.dfd, st.backup, 0)
	}
	unix.Close(st.dfd)
}

// commit renames every stage into place, all or nothing: each previous file
// is first kept under a backup name (a hard link, so the target never goes
// missing), and a rename that fails puts the ones before it back.
func commit(all []*staged) error {
	for i, st := range all {
		if err := st.rename(); err != nil {
			for _, done := range all[:i] {
				done.undo()
			}
			for _, rest := range all[i:] {
				rest.abort()
			}
			return fmt.Errorf("write %s: %w", st.path, err)
		}
	}
	var err error
	for _, st := range all {
		if serr := unix.Fsync(st.dfd); serr != nil && err == nil {
			err = fmt.Errorf("sync directory %s: %w", st.dir, serr)
		}
		st.tmp = "" // renamed: abort only drops the backup
		st.abort()
	}
	return err
}

func (st *staged) rename() error {
	bak := strings.Replace(st.tmp, ".tmp-", ".bak-", 1)
	switch err := unix.Linkat(st.dfd, st.base, st.dfd, bak, 0); {
	case err == nil:
		st.backup = bak
	case !errors.Is(err, unix.ENOENT):
		return fmt.Errorf("keep the previous file: %w", err)
	}
	return unix.Renameat(st.dfd, st.tmp, st.dfd, st.base)
}

// undo puts back what a committed stage replaced.
func (st *staged) undo() {
	if st.backup != "" {
		unix.Renameat(st.dfd, st.backup, st.dfd, st.base)
		st.backup = ""
	} else {
		unix.Unlinkat(st.dfd, st.base, 0)
	}
	st.tmp = ""
	st.abort()
}

// matches tells whether path is a regular file with mode 0600 holding
// exactly data. It never follows a link at path and never blocks on a FIFO
// there: such a thing is "not current", to be replaced.
func matches(path string, data []byte) bool {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() || st.Mode().Perm() != 0o600 || st.Size() != int64(len(data)) {
		return false
	}
	b := make([]byte, len(data)+1)
	n, _ := io.ReadFull(f, b)
	return n == len(data) && bytes.Equal(b[:n], data)
}

// ensureFile makes path hold exactly data with mode 0600, rewriting it only
// when it differs. It reports whether it wrote.
func ensureFile(path string, data []byte) (bool, error) {
	if matches(path, data) {
		return false, nil
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

// present tells whether anything exists at path (a link is not followed).
func present(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// anyPresent tells whether any of the paths exists (as anything).
func anyPresent(paths ...string) bool {
	for _, p := range paths {
		if present(p) {
			return true
		}
	}
	return false
}

// fileState is what the three credential targets hold.
type fileState int8

const (
	filesAbsent  fileState = iota // none of them exists
	filesCurrent                  // all hold the sources: regular files, 0600
	filesOther                    // anything else: some missing, stale, or not a regular file
)

// inspect tells the state of the targets against sources (nil: unknown, so
// never current).
func inspect(creds []credential, sources [][]byte) fileState {
	current, any := sources != nil, false
	for i, cr := range creds {
		if present(cr.target) {
			any = true
		}
		if current && !matches(cr.target, sources[i]) {
			current = false
		}
	}
	switch {
	case current:
		return filesCurrent
	case !any:
		return filesAbsent
	}
	return filesOther
}

// runInit is the initContainer: validate the three sources, then put them
// in place with the dead-man probe's copy of this binary and a boot
// heartbeat, all or nothing. A relay or monitoring pod gets no keys.
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
	ks, err := validateSources(data, c.PoolID, c.PoolIDHex)
	if err != nil {
		return err
	}
	if w, err := c.chain().kesWindow(ks.cert.kesPeriod, time.Now()); err != nil {
		log.Warn("this node will not be allowed to forge with these keys", "reason", err.Error())
	} else if p := w.problem(); p != "" {
		log.Warn("this node will not be allowed to forge with these keys", "reason", p)
	}
	var all []*staged
	add := func(what, path string, mode uint32, fill func(*os.File) error) error {
		st, err := stage(path, mode, fill)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		all = append(all, st)
		return nil
	}
	for i, cr := range creds {
		if err == nil && !matches(cr.target, data[i]) {
			err = add(cr.targetVar, cr.target, 0o600, writeBytes(data[i]))
		}
	}
	// No sidecar runs yet: the heartbeat says the keys are there for the
	// node's boot. An old one would fail the dead-man probe against a fresh
	// node; none at all would look like one deleted.
	if err == nil {
		err = add("HEARTBEAT_FILE", c.HeartbeatFile, 0o644, writeBytes(bootHeartbeat(c)))
	}
	if err == nil && c.DeadmanBinary != "" {
		err = add("DEADMAN_BINARY", c.DeadmanBinary, 0o755, copySelf)
	}
	if err != nil {
		for _, st := range all {
			st.abort()
		}
		return err
	}
	if err := commit(all); err != nil {
		return err
	}
	log.Info("credentials in place", "files", 3, "took", time.Since(start).String())
	return nil
}

// copySelf streams the running binary (11 MB) into f, for the node
// container's livenessProbe.
func copySelf(f *os.File) error {
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		return err
	}
	defer self.Close()
	_, err = io.Copy(f, self)
	return err
}

// keyFiles are the credentials the loop places and removes, with what it
// tells of each write and removal.
type keyFiles struct {
	creds []credential // none for a replica that never forges
	log   *slog.Logger
	count func(op, targetVar string) // a metric per write or removal
}

// read reads and checks the sources; nil data if there are no credentials
// to read or one is unusable.
func (k keyFiles) read() ([][]byte, string, error) {
	if len(k.creds) == 0 {
		return nil, "", nil
	}
	return readSources(k.creds)
}

// place writes every credential that is missing or differs; false if one
// could not be written.
func (k keyFiles) place(sources [][]byte) bool {
	ok := true
	for i, cr := range k.creds {
		wrote, err := ensureFile(cr.target, sources[i])
		if err != nil {
			k.log.Error("cannot write credential", "file", cr.targetVar, "err", err)
			ok = false
			continue
		}
		if wrote {
			k.count("write", cr.targetVar)
		}
	}
	return ok
}

// remove unlinks every credential; false if one could not be removed.
func (k keyFiles) remove() bool {
	ok := true
	for _, cr := range k.creds {
		removed, err := removeFile(cr.target)
		if err != nil {
			k.log.Error("cannot remove credential", "file", cr.targetVar, "err", err)
			ok = false
		}
		if removed {
			k.count("remove", cr.targetVar)
		}
	}
	return ok
}
