package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
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
		{"unknown lists the valid ones", []string{"forge"}, env{}, 2, `unknown command "forge": want one of init, run, deadman, help, version`},
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
