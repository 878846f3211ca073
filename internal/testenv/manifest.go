package testenv

import (
	"path/filepath"
	"strings"
)

// Running a pod from a rendered manifest (component_test.go): the node's
// command line, forge-manager's environment and the dead-man probe's
// command come from the manifest instead of the pod's built-in ones. The
// simulated containers share the host's filesystem, so each path under a
// volume's mountPath is mapped onto that volume's directory in the pod
// (PodSpec.Mounts); with no Mounts set nothing here changes a pod.

// StandInFlags are the cardano-node flags the stand-in implements. Its
// command line from a manifest keeps these; the rest (run, --config,
// --topology, --database-path, --host-addr, --port, ...) concern the chain
// and the network, which the stand-in does not have.
var StandInFlags = []string{"shelley-kes-key", "shelley-vrf-key", "shelley-operational-certificate",
	"socket-path", "start-as-non-producing-node", "non-producing-node"}

// StandInArgs splits a real cardano-node command line (the manifest's args)
// into the part the stand-in takes and the part it drops.
func StandInArgs(args []string) (kept, dropped []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || !contains(StandInFlags, name) {
			dropped = append(dropped, a)
			// A dropped "--flag value": its value goes too.
			if strings.HasPrefix(a, "-") && !hasValue && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				i++
				dropped = append(dropped, args[i])
			}
			continue
		}
		kept = append(kept, a)
		if !hasValue && name != "start-as-non-producing-node" && name != "non-producing-node" && i+1 < len(args) {
			i++
			kept = append(kept, args[i])
		}
	}
	return kept, dropped
}

// mapPath rewrites a container path under one of Spec.Mounts onto the
// pod's volume directory; in "--flag=/ipc/x" only the value is mapped.
func (p *Pod) mapPath(s string) string {
	prefix, value := "", s
	if i := strings.Index(s, "="); strings.HasPrefix(s, "-") && i > 0 {
		prefix, value = s[:i+1], s[i+1:]
	}
	for mount, volume := range p.Spec.Mounts {
		if value == mount || strings.HasPrefix(value, strings.TrimSuffix(mount, "/")+"/") {
			return prefix + filepath.Join(p.Dir, volume, strings.TrimPrefix(value, mount))
		}
	}
	return s
}

func (p *Pod) mapPaths(in []string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = p.mapPath(s)
	}
	return out
}

// probeCommand is the dead-man probe's argv: the manifest's, mapped, or
// the pod's built-in one.
func (p *Pod) probeCommand() []string {
	if len(p.Spec.ProbeCommand) > 0 {
		return p.mapPaths(p.Spec.ProbeCommand)
	}
	return []string{p.IPC("forge-manager"), "deadman"}
}
