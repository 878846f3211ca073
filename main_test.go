package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
)

func TestSubcommands(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		env      env
		code     int // 0: no error
		contains string
	}{
		{"version", []string{"version"}, env{}, 0, "forge-manager " + version},
		{"help", []string{"help"}, env{}, 0, "LEASE_DURATION"},
		{"unknown lists the valid ones", []string{"forge"}, env{}, 2, `unknown command "forge": want one of init, run, deadman, step-down, help, version`},
		{"step-down needs its duration", []string{"step-down"}, env{}, 2, "step-down takes one argument"},
		{"step-down refuses a bad duration", []string{"step-down", "forever"}, env{}, 2, `step-down "forever": want how long`},
		{"step-down on a relay", []string{"step-down", "30m"}, env{"APPLICATION_TYPE": "relay"}, 2, "APPLICATION_TYPE=relay never forges"},
		{"step-down 0 with none in effect", []string{"step-down", "0"}, env{"POD_NAME": "bp-0", "STEP_DOWN_FILE": "/nonexistent-dir/sd"}, 0, "step-down ended: bp-0 may forge"},
		{"extra arguments", []string{"run", "--lease=15s"}, env{}, 2, "takes no arguments"},
		{"run is the default", nil, env{}, 2, "POD_NAME is required by run"},
		{"bad config exits 2", []string{"init"}, env{"TARGET_KES_KEY": "kes.skey"}, 2, `TARGET_KES_KEY="kes.skey": want an absolute path`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(context.Background(), tc.args, tc.env.lookup, &out, &errOut)
			code := 0
			if err != nil {
				code = exitCode(err)
			}
			if code != tc.code {
				t.Errorf("exit code %d (%v); want %d", code, err, tc.code)
			}
			text := out.String()
			if err != nil {
				text += err.Error()
			}
			if !strings.Contains(text, tc.contains) {
				t.Errorf("output %q lacks %q", text, tc.contains)
			}
		})
	}
}

// TestClusterKubeconfigErrors: CLUSTER_KUBECONFIG is read once at start; a
// file that is missing, unreadable as a kubeconfig, or without a usable
// context stops run with exit code 2 and a line naming the variable and the
// file.
func TestClusterKubeconfigErrors(t *testing.T) {
	dir := t.TempDir()
	local := filepath.Join(dir, "local")
	os.WriteFile(local, []byte("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: \"https://127.0.0.1:1\"}\n"+
		"users:\n- name: u\n  user: {token: t}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n"), 0o600)
	garbage, empty := filepath.Join(dir, "garbage"), filepath.Join(dir, "empty")
	os.WriteFile(garbage, []byte("{not yaml: ["), 0o600)
	os.WriteFile(empty, []byte("apiVersion: v1\nkind: Config\n"), 0o600)
	for _, path := range []string{filepath.Join(dir, "missing"), garbage, empty} {
		e := env{"POD_NAME": "bp-0", "KUBECONFIG": local, "ENABLE_CLUSTER_MANAGEMENT": "true", "CLUSTER_REGION": "eu",
			"CLUSTER_KUBECONFIG": path, "DEADMAN_BINARY": "", "HEARTBEAT_FILE": filepath.Join(dir, "hb")}
		err := run(context.Background(), []string{"run"}, e.lookup, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), `CLUSTER_KUBECONFIG="`+path+`"`) {
			t.Errorf("%s: %v (exit %d); want exit 2 naming CLUSTER_KUBECONFIG and the file", filepath.Base(path), err, exitCode(err))
		}
	}
}

// TestWarnOtherElection: a held Lease of this pool under the name the other
// setting of ENABLE_CLUSTER_MANAGEMENT uses is warned about (a migration in
// progress would run two elections); none, or a released one, is not.
func TestWarnOtherElection(t *testing.T) {
	c, _ := loadConfig(runEnv("POOL_ID", "p1", "ENABLE_CLUSTER_MANAGEMENT", "true", "CLUSTER_REGION", "eu").lookup, "run")
	if got := otherElection(c); got != "cardano-leader-mainnet-p1" {
		t.Errorf("with cluster management the other election is %q; want the plain Lease", got)
	}
	off, _ := loadConfig(runEnv("POOL_ID", "p1").lookup, "run")
	if got := otherElection(off); got != "cardano-forge-mainnet-p1" {
		t.Errorf("without cluster management the other election is %q; want the token", got)
	}
	for _, tc := range []struct {
		holder string
		warn   bool
	}{{"bp-0_uid", true}, {"", false}} {
		m := &memLeases{}
		m.create(context.Background(), &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{HolderIdentity: &tc.holder}})
		var b bytes.Buffer
		warnOtherElection(context.Background(), m, "cardano-leader-mainnet-p1", time.Second, slog.New(slog.NewJSONHandler(&b, nil)))
		if got := strings.Contains(b.String(), "held under another name"); got != tc.warn {
			t.Errorf("holder %q: warned %v; want %v (%s)", tc.holder, got, tc.warn, b.String())
		}
	}
	var b bytes.Buffer
	warnOtherElection(context.Background(), &memLeases{}, "x", time.Second, slog.New(slog.NewJSONHandler(&b, nil)))
	if b.Len() != 0 {
		t.Errorf("no Lease: %s", b.String())
	}
}
