package testenv

import "fmt"

// maxPods bounds the simulated pods of one control plane; each has its own
// /30 network 10.213.N.0 with the host at .1 and the pod at .2.
const maxPods = 64

// HostIP is the host's address on pod n's veth (n=0: the advertise address).
func HostIP(n int) string { return fmt.Sprintf("10.213.%d.1", n) }
