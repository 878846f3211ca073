// Package testenv runs a real Kubernetes control plane (etcd and
// kube-apiserver built by `make testenv`) and simulated pods for
// forge-manager's integration tests and its demo. It is test support only:
// the forge-manager binary never imports it.
package testenv

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
)

// Versions built by `make testenv` (hack/kube and hack/etcd pin them).
const (
	KubeVersion = "v1.37.2"
	EtcdVersion = "v3.6.16"
)

// BinDir is where `make testenv` puts kube-apiserver, kubectl and etcd:
// $FORGE_TESTENV_DIR, else the user cache directory.
func BinDir() string {
	if d := os.Getenv("FORGE_TESTENV_DIR"); d != "" {
		return d
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = filepath.Join(os.TempDir(), "cache")
	}
	return filepath.Join(cache, "forge-manager", "testenv-kube-"+KubeVersion+"-etcd-"+EtcdVersion)
}

// Binaries returns the paths of the control plane binaries, or an error that
// says how to build them.
func Binaries() (map[string]string, error) {
	dir := BinDir()
	bins := map[string]string{}
	for _, b := range []string{"etcd", "kube-apiserver", "kubectl"} {
		p := filepath.Join(dir, b)
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("control plane binary %s not found in %s: run `make testenv` (or `make test`, which builds it first)", b, dir)
		}
		bins[b] = p
	}
	return bins, nil
}

// ControlPlane is a running etcd and kube-apiserver.
type ControlPlane struct {
	Dir        string // scratch directory: certs, data, logs, kubeconfig
	Port       int    // kube-apiserver's secure port, on every local address
	CA         []byte // PEM of the CA that signed the serving certificate
	AdminToken string
	Kubeconfig string // admin kubeconfig, for kubectl

	bins      map[string]string
	etcd      *exec.Cmd
	apiserver *exec.Cmd
	apiArgs   []string
}

// Start builds certificates and starts etcd and kube-apiserver in a new
// temporary directory, and waits until /readyz answers ok.
func Start(ctx context.Context) (*ControlPlane, error) {
	bins, err := Binaries()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "forge-testenv-")
	if err != nil {
		return nil, err
	}
	cp := &ControlPlane{Dir: dir, bins: bins, AdminToken: "admin-" + randHex(16)}
	if err := cp.start(ctx); err != nil {
		cp.Stop()
		return nil, err
	}
	return cp, nil
}

func (cp *ControlPlane) start(ctx context.Context) error {
	pki, err := writePKI(cp.Dir)
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	cp.CA = pki.caPEM
	tokens := filepath.Join(cp.Dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(cp.AdminToken+",admin,admin-uid,system:masters\n"), 0o600); err != nil {
		return err
	}
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	cp.etcd, err = cp.spawn("etcd", cp.bins["etcd"],
		"--data-dir", filepath.Join(cp.Dir, "etcd"), "--name", "default",
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "default="+peerURL, "--log-level", "warn")
	if err != nil {
		return err
	}
	cp.Port = ports[2]
	// Bound on every address so simulated pods in their own network
	// namespaces reach it through their veth (see pod.go).
	cp.apiArgs = []string{
		"--etcd-servers", etcdURL,
		"--bind-address=0.0.0.0", "--advertise-address=" + HostIP(0),
		"--secure-port=" + strconv.Itoa(cp.Port),
		"--cert-dir=" + filepath.Join(cp.Dir, "certs"),
		"--tls-cert-file=" + pki.certFile, "--tls-private-key-file=" + pki.keyFile,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + pki.saKeyFile,
		"--service-account-signing-key-file=" + pki.saKeyFile,
		"--token-auth-file=" + tokens,
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range=10.0.0.0/24",
		"--disable-admission-plugins=ServiceAccount",
	}
	if err := cp.StartAPIServer(ctx); err != nil {
		return err
	}
	return cp.writeKubeconfig()
}

// StartAPIServer starts kube-apiserver (again, after StopAPIServer) and waits
// for /readyz.
func (cp *ControlPlane) StartAPIServer(ctx context.Context) error {
	var err error
	cp.apiserver, err = cp.spawn("kube-apiserver", cp.bins["kube-apiserver"], cp.apiArgs...)
	if err != nil {
		return err
	}
	return cp.waitReady(ctx, 60*time.Second)
}

// StopAPIServer stops kube-apiserver and waits for it to exit; etcd keeps
// running, so every object survives.
func (cp *ControlPlane) StopAPIServer() {
	stop(cp.apiserver, 10*time.Second)
	cp.apiserver = nil
}

// Stop stops both processes and removes the scratch directory.
func (cp *ControlPlane) Stop() {
	stop(cp.apiserver, 10*time.Second)
	stop(cp.etcd, 10*time.Second)
	if cp.Dir != "" {
		os.RemoveAll(cp.Dir)
	}
}

// URL is the API server as seen from this host.
func (cp *ControlPlane) URL() string { return "https://127.0.0.1:" + strconv.Itoa(cp.Port) }

// AdminConfig is a client config with cluster-admin rights.
func (cp *ControlPlane) AdminConfig() *rest.Config {
	return cp.tokenConfig(cp.AdminToken)
}

func (cp *ControlPlane) tokenConfig(token string) *rest.Config {
	return &rest.Config{
		Host:            cp.URL(),
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: cp.CA},
		QPS:             -1,
	}
}

// Version asks the server for its version, for test logs.
func (cp *ControlPlane) Version() (string, error) {
	out, err := cp.Kubectl("version", "-o", "json")
	if err != nil {
		return "", err
	}
	i := strings.Index(string(out), `"serverVersion"`)
	if i < 0 {
		return "", fmt.Errorf("no serverVersion in %s", out)
	}
	j := strings.Index(string(out[i:]), `"gitVersion": "`)
	if j < 0 {
		return "", fmt.Errorf("no gitVersion in %s", out)
	}
	rest := string(out[i+j+len(`"gitVersion": "`):])
	return rest[:strings.IndexByte(rest, '"')], nil
}

// Kubectl runs kubectl as cluster admin and returns its combined output.
func (cp *ControlPlane) Kubectl(args ...string) ([]byte, error) {
	cmd := exec.Command(cp.bins["kubectl"], append([]string{"--kubeconfig", cp.Kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

func (cp *ControlPlane) writeKubeconfig() error {
	cp.Kubeconfig = filepath.Join(cp.Dir, "admin.kubeconfig")
	caFile := filepath.Join(cp.Dir, "ca.crt")
	if err := os.WriteFile(caFile, cp.CA, 0o644); err != nil {
		return err
	}
	return os.WriteFile(cp.Kubeconfig, []byte(kubeconfig(cp.URL(), caFile, cp.AdminToken)), 0o600)
}

// PodKubeconfig is a kubeconfig for cp as the pod in slot index reaches it
// (through its veth), with token and the CA inline: what a
// CLUSTER_KUBECONFIG Secret would hold.
func (cp *ControlPlane) PodKubeconfig(index int, token string) []byte {
	return []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: coordination
  cluster: {server: "https://%s:%d", certificate-authority-data: %q}
users:
- name: forge-manager
  user: {token: %q}
contexts:
- name: coordination
  context: {cluster: coordination, user: forge-manager}
current-context: coordination
`, HostIP(index), cp.Port, base64.StdEncoding.EncodeToString(cp.CA), token))
}

func kubeconfig(server, caFile, token string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: %q, certificate-authority: %q}
users:
- name: user
  user: {token: %q}
contexts:
- name: test
  context: {cluster: test, user: user}
current-context: test
`, server, caFile, token)
}

// spawn starts a control plane process with its output in Dir/<name>.log.
// Pdeathsig kills it if the test binary dies without cleaning up (a panic).
func (cp *ControlPlane) spawn(name, bin string, args ...string) (*exec.Cmd, error) {
	logf, err := os.OpenFile(filepath.Join(cp.Dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { cmd.Wait(); logf.Close() }()
	return cmd, nil
}

// LogTail returns the last lines of a control plane process's log.
func (cp *ControlPlane) LogTail(name string, lines int) string {
	b, _ := os.ReadFile(filepath.Join(cp.Dir, name+".log"))
	l := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

func (cp *ControlPlane) waitReady(ctx context.Context, limit time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: certPool(cp.CA)},
	}}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if cp.apiserver.ProcessState != nil {
			break
		}
		req, _ := http.NewRequestWithContext(ctx, "GET", cp.URL()+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+cp.AdminToken)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("kube-apiserver not ready after %s; its log ends:\n%s", limit, cp.LogTail("kube-apiserver", 30))
}

// stop sends SIGTERM, then SIGKILL after grace, and waits for the exit.
func stop(cmd *exec.Cmd, grace time.Duration) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if syscall.Kill(cmd.Process.Pid, 0) != nil || isZombie(cmd.Process.Pid) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Kill()
	for i := 0; i < 250 && syscall.Kill(cmd.Process.Pid, 0) == nil && !isZombie(cmd.Process.Pid); i++ {
		time.Sleep(20 * time.Millisecond)
	}
}

// isZombie tells whether pid has exited but not yet been reaped (the Wait
// goroutine reaps it).
func isZombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] == 'Z'
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
