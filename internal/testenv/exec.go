package testenv

import (
	"context"
	"os/exec"
	"strconv"
)

// Exec runs forge-manager with args in the pod's namespaces, as the
// sidecar's UID and with its environment: what `kubectl exec POD -c
// forge-manager -- /forge-manager ARGS` does. It returns the output.
func (p *Pod) Exec(ctx context.Context, args ...string) ([]byte, error) {
	uid := strconv.Itoa(p.Spec.UID)
	argv := append([]string{"-t", strconv.Itoa(p.pausePID), "-p", "-m", "-n", "-S", uid, "-G", uid, "--", p.Spec.ForgeManager}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", argv...)
	cmd.Env = append(p.SidecarEnv(), "PATH=/usr/bin:/bin")
	return cmd.CombinedOutput()
}
