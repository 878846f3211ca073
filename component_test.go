//go:build integration

package main

// Tests of deploy/components/forge-manager, the Component that adds
// forge-manager to a cardano-node StatefulSet that is not ours
// (testdata/adopt): built with kustomize, validated by the real API server,
// and run: the rendered pod's containers in simulated pods.

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"forge-manager/internal/testenv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

const (
	adoptDir      = "testdata/adopt"
	adoptProducer = "spo-producer" // the operator's StatefulSet, labelled
	adoptRelay    = "spo-relay"    // beside it, not labelled
	saMountPath   = "/var/run/secrets/kubernetes.io/serviceaccount"
)

// rendered is what `kubectl kustomize` made of a kustomization.
type rendered struct {
	sts        map[string]*appsv1.StatefulSet
	configMaps map[string]*corev1.ConfigMap
}

// kustomize builds dir and decodes the StatefulSets and ConfigMaps.
func kustomize(t *testing.T, dir string) (rendered, error) {
	t.Helper()
	out, err := controlPlane(t).Kubectl("kustomize", dir)
	if err != nil {
		return rendered{}, err
	}
	return decodeObjects(t, out), nil
}

// decodeObjects reads YAML objects through kubectl's JSON.
func decodeObjects(t *testing.T, yaml []byte) rendered {
	t.Helper()
	f := filepath.Join(t.TempDir(), "objects.yaml")
	if err := os.WriteFile(f, yaml, 0o644); err != nil {
		t.Fatal(err)
	}
	js, err := controlPlane(t).Kubectl("create", "--dry-run=client", "-o", "json", "-f", f)
	if err != nil {
		t.Fatal(err)
	}
	r := rendered{sts: map[string]*appsv1.StatefulSet{}, configMaps: map[string]*corev1.ConfigMap{}}
	dec := json.NewDecoder(bytes.NewReader(js))
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err == io.EOF {
			return r
		} else if err != nil {
			t.Fatal(err)
		}
		var meta struct{ Kind string }
		json.Unmarshal(raw, &meta)
		switch meta.Kind {
		case "StatefulSet":
			var s appsv1.StatefulSet
			if err := json.Unmarshal(raw, &s); err != nil {
				t.Fatal(err)
			}
			r.sts[s.Name] = &s
		case "ConfigMap":
			var c corev1.ConfigMap
			if err := json.Unmarshal(raw, &c); err != nil {
				t.Fatal(err)
			}
			r.configMaps[c.Name] = &c
		}
	}
}

func container(t *testing.T, cs []corev1.Container, name string) *corev1.Container {
	t.Helper()
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	t.Fatalf("no container %s", name)
	return nil
}

func volume(t *testing.T, pod *corev1.PodSpec, name string) *corev1.Volume {
	t.Helper()
	for i := range pod.Volumes {
		if pod.Volumes[i].Name == name {
			return &pod.Volumes[i]
		}
	}
	t.Fatalf("no volume %s", name)
	return nil
}

// mountOf is the volume a container mounts at path, or "".
func mountOf(c *corev1.Container, path string) string {
	for _, m := range c.VolumeMounts {
		if m.MountPath == path {
			return m.Name
		}
	}
	return ""
}

// TestComponentAdoptsTheLabelledStatefulSet: the Component changes the
// labelled StatefulSet as docs/adopt.md says, and nothing else.
func TestComponentAdoptsTheLabelledStatefulSet(t *testing.T) {
	r, err := kustomize(t, adoptDir)
	if err != nil {
		t.Fatal(err)
	}
	in, _ := os.ReadFile(filepath.Join(adoptDir, "statefulset.yaml"))
	orig := decodeObjects(t, in)
	// The check README and docs/adopt.md tell the operator to run.
	out, _ := controlPlane(t).Kubectl("kustomize", adoptDir)
	if n := len(regexp.MustCompile(`(?m)name: forge-manager-init$`).FindAll(out, -1)); n != 1 {
		t.Errorf("grep -c 'name: forge-manager-init$' counts %d; want 1, the one adopted StatefulSet", n)
	}

	relay := r.sts[adoptRelay].Spec.Template.Spec
	if !reflect.DeepEqual(relay, orig.sts[adoptRelay].Spec.Template.Spec) {
		t.Errorf("the unlabelled StatefulSet was changed:\n%+v", relay)
	}

	pod := r.sts[adoptProducer].Spec.Template.Spec
	was := orig.sts[adoptProducer].Spec.Template.Spec
	node := &pod.Containers[0]
	if node.Name != was.Containers[0].Name {
		t.Fatalf("containers/0 is %s; want the operator's node container %s, still first", node.Name, was.Containers[0].Name)
	}
	wantArgs := append(slices.Clone(was.Containers[0].Args), "--shelley-kes-key=/ipc/kes.skey", "--shelley-vrf-key=/ipc/vrf.skey",
		"--shelley-operational-certificate=/ipc/node.cert", "--start-as-non-producing-node")
	if !slices.Equal(node.Args, wantArgs) {
		t.Errorf("node args %q; want the operator's with the key paths and the non-producing flag appended: %q", node.Args, wantArgs)
	}
	if lp := node.LivenessProbe; lp == nil || lp.Exec == nil || !slices.Equal(lp.Exec.Command, []string{"/ipc/forge-manager", "deadman"}) {
		t.Errorf("node livenessProbe %+v; want the dead-man probe", node.LivenessProbe)
	}
	if len(pod.Containers) != len(was.Containers)+1 || pod.Containers[len(pod.Containers)-1].Name != "forge-manager" {
		t.Errorf("containers %v; want the operator's and the sidecar last", names(pod.Containers))
	}
	if len(pod.InitContainers) != 1 || pod.InitContainers[0].Name != "forge-manager-init" || !slices.Equal(pod.InitContainers[0].Args, []string{"init"}) {
		t.Errorf("initContainers %v; want forge-manager-init", names(pod.InitContainers))
	}
	sidecar := container(t, pod.Containers, "forge-manager")
	if pod.ShareProcessNamespace == nil || !*pod.ShareProcessNamespace {
		t.Error("shareProcessNamespace is not true: the sidecar could not find the node")
	}
	ipc := volume(t, &pod, "forge-manager-ipc")
	if ipc.EmptyDir == nil || ipc.EmptyDir.Medium != corev1.StorageMediumMemory {
		t.Errorf("/ipc is %+v; want an in-memory emptyDir", ipc.VolumeSource)
	}
	for _, c := range []*corev1.Container{node, sidecar, &pod.InitContainers[0]} {
		if mountOf(c, "/ipc") != "forge-manager-ipc" {
			t.Errorf("%s does not mount the in-memory /ipc", c.Name)
		}
		if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
			t.Errorf("%s sets its own runAsUser: one UID for the pod", c.Name)
		}
	}
	if sc := pod.SecurityContext; sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 10001 {
		t.Errorf("pod securityContext %+v; want runAsUser 10001 for every container", sc)
	}

	// The API token: not automounted, mounted in the sidecar only.
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken is not false: every container would get the token")
	}
	if pod.ServiceAccountName != testenv.ServiceAccount {
		t.Errorf("serviceAccountName %q; want deploy/rbac's %s", pod.ServiceAccountName, testenv.ServiceAccount)
	}
	token := volume(t, &pod, "forge-manager-token")
	var sources []string
	for _, s := range token.Projected.Sources {
		switch {
		case s.ServiceAccountToken != nil:
			sources = append(sources, s.ServiceAccountToken.Path)
		case s.ConfigMap != nil && s.ConfigMap.Name == "kube-root-ca.crt":
			sources = append(sources, s.ConfigMap.Items[0].Path)
		case s.DownwardAPI != nil:
			sources = append(sources, s.DownwardAPI.Items[0].Path+"="+s.DownwardAPI.Items[0].FieldRef.FieldPath)
		}
	}
	if !slices.Equal(sources, []string{"token", "ca.crt", "namespace=metadata.namespace"}) {
		t.Errorf("token volume holds %v; want token, ca.crt and the namespace, as in-cluster clients read them", sources)
	}
	for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
		got := mountOf(&c, saMountPath)
		for _, m := range c.VolumeMounts {
			if m.Name == "forge-manager-token" && c.Name != "forge-manager" {
				t.Errorf("%s mounts the API token", c.Name)
			}
		}
		if c.Name == "forge-manager" && got != "forge-manager-token" {
			t.Errorf("the sidecar mounts %q at %s; want the token volume", got, saMountPath)
		}
	}

	// The downward API and the operator's settings.
	refs := map[string]string{}
	for _, e := range sidecar.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			refs[e.Name] = e.ValueFrom.FieldRef.FieldPath
		}
	}
	if want := map[string]string{"POD_NAME": "metadata.name", "POD_UID": "metadata.uid", "NAMESPACE": "metadata.namespace"}; !reflect.DeepEqual(refs, want) {
		t.Errorf("sidecar downward API %v; want %v", refs, want)
	}
	env := settings(t, r, sidecar)
	if env["CARDANO_NETWORK"] != "preprod" || env["POOL_ID"] == "" {
		t.Errorf("sidecar settings %v; want the operator's ConfigMap", env)
	}
	if !reflect.DeepEqual(settings(t, r, &pod.InitContainers[0]), env) {
		t.Error("the init container and the sidecar read different settings")
	}
	items := volume(t, &pod, "forge-manager-keys").Secret.Items
	if len(items) != 3 || items[0].Key != "hot.skey" || items[0].Path != "kes.skey" {
		t.Errorf("keys volume items %+v; want the operator's key names mapped", items)
	}
}

func names(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

// settings is a container's literal environment: its envFrom ConfigMaps
// as rendered, then its own values.
func settings(t *testing.T, r rendered, c *corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		cm := r.configMaps[from.ConfigMapRef.Name]
		if cm == nil {
			t.Fatalf("%s reads ConfigMap %s, which the kustomization does not make", c.Name, from.ConfigMapRef.Name)
		}
		for k, v := range cm.Data {
			env[k] = v
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env[e.Name] = e.Value
		}
	}
	return env
}

// TestComponentFailsLoudly: a StatefulSet the Component cannot adopt
// safely stops `kubectl kustomize` (or the API server's validation), never
// builds into a pod with the key flags on the wrong container.
func TestComponentFailsLoudly(t *testing.T) {
	in, _ := os.ReadFile(filepath.Join(adoptDir, "statefulset.yaml"))
	producer := string(in[:bytes.Index(in, []byte("\n---\n"))+1])
	replace := func(old, new string) func(*testing.T, string) string {
		return func(t *testing.T, s string) string {
			if !strings.Contains(s, old) {
				t.Fatalf("testdata changed: %q not in it", old)
			}
			return strings.Replace(s, old, new, 1)
		}
	}
	// noArgs drops the node's args: the official image's entrypoint also
	// runs a node from environment variables alone.
	noArgs := func(_ *testing.T, s string) string {
		var out []string
		for _, l := range strings.Split(s, "\n") {
			if l != "        args:" && !strings.HasPrefix(l, "        - run") && !strings.HasPrefix(l, "        - --") {
				out = append(out, l)
			}
		}
		return strings.Join(out, "\n")
	}
	cases := []struct {
		name string
		edit func(*testing.T, string) string
		want string
	}{
		{"another container first", replace("      containers:\n      - name: node\n",
			"      containers:\n      - name: exporter\n        image: example.com/exporter:1\n        args: [--port=9100]\n        volumeMounts: [{name: tmp, mountPath: /tmp}]\n      - name: node\n"),
			"testing value /spec/template/spec/containers/0/args/0 failed"},
		{"run in command, not args", replace("        args:\n        - run\n", "        command: [cardano-node, run]\n        args:\n"),
			"testing value /spec/template/spec/containers/0/args/0 failed"},
		{"no args", noArgs, "missing path"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sts := tc.edit(t, producer)
			_, err := kustomizeWith(t, sts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v; want an error with %q", err, tc.want)
			}
		})
	}
}

// kustomizeWith builds the Component over one StatefulSet, in a
// kustomization of its own.
func kustomizeWith(t *testing.T, sts string) (rendered, error) {
	t.Helper()
	dir := t.TempDir()
	repo, _ := filepath.Abs(".")
	comp, _ := filepath.Rel(dir, filepath.Join(repo, "deploy/components/forge-manager"))
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [sts.yaml]\ncomponents: [" + comp +
		"]\nconfigMapGenerator:\n- name: forge-manager\n  literals: [CARDANO_NETWORK=preprod]\n"
	os.WriteFile(filepath.Join(dir, "Kustomization"), []byte(k), 0o644)
	os.WriteFile(filepath.Join(dir, "sts.yaml"), []byte(sts), 0o644)
	return kustomize(t, dir)
}

// TestComponentReplacesAnIPCMount: a node that mounts a volume of its own
// at /ipc (the official image's socket directory) ends with the in-memory
// one there, once: kustomize merges volumeMounts by mountPath.
func TestComponentReplacesAnIPCMount(t *testing.T) {
	in, _ := os.ReadFile(filepath.Join(adoptDir, "statefulset.yaml"))
	producer := string(in[:bytes.Index(in, []byte("\n---\n"))+1])
	old := "        - {name: db, mountPath: /data}\n"
	if !strings.Contains(producer, old) {
		t.Fatalf("testdata changed: %q not in it", old)
	}
	r, err := kustomizeWith(t, strings.Replace(producer, old, old+"        - {name: tmp, mountPath: /ipc}\n", 1))
	if err != nil {
		t.Fatal(err)
	}
	var at []string
	for _, m := range r.sts[adoptProducer].Spec.Template.Spec.Containers[0].VolumeMounts {
		if m.MountPath == "/ipc" {
			at = append(at, m.Name)
		}
	}
	if !slices.Equal(at, []string{"forge-manager-ipc"}) {
		t.Errorf("the node mounts %v at /ipc; want forge-manager-ipc alone", at)
	}
}

// TestComponentDryRun: the worked example, built with the Component, is
// accepted by the real API server (kubectl apply -k --dry-run=server).
func TestComponentDryRun(t *testing.T) {
	c := controlPlane(t)
	c.Kubectl("create", "namespace", "stakepool") // the example's namespace; may exist already
	out, err := c.Kubectl("apply", "--dry-run=server", "-k", adoptDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"statefulset.apps/spo-producer", "statefulset.apps/spo-relay", "role.rbac.authorization.k8s.io/forge-manager", "configmap/forge-manager-"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("kubectl apply -k %s lacks %s:\n%s", adoptDir, want, out)
		}
	}
}

// TestComponentPodsForge runs the rendered pod: the init container's and
// the sidecar's settings, the node's command line (the key paths and the
// non-producing flag come only from it) and its dead-man probe, taken from
// the rendered StatefulSet and mapped onto simulated pods. One of two pods
// leads and forges; when its sidecar dies, the rendered probe restarts its
// node before the other may take over, and the other forges.
func TestComponentPodsForge(t *testing.T) {
	r, err := kustomize(t, adoptDir)
	if err != nil {
		t.Fatal(err)
	}
	pod := r.sts[adoptProducer].Spec.Template.Spec
	node, sidecar := &pod.Containers[0], container(t, pod.Containers, "forge-manager")
	init := &pod.InitContainers[0]
	if !slices.Equal(sidecar.Args, []string{"run"}) || !slices.Equal(init.Args, []string{"init"}) {
		t.Fatalf("sidecar args %q, init args %q", sidecar.Args, init.Args)
	}
	env := settings(t, r, sidecar)
	if !reflect.DeepEqual(settings(t, r, init), env) {
		t.Fatal("the init container and the sidecar read different settings; the simulated pod gives both the sidecar's")
	}
	nodeArgs, dropped := testenv.StandInArgs(node.Args)
	t.Logf("node flags the stand-in has no use for (no chain, no peers): %q", dropped)
	lp := node.LivenessProbe
	sec := func(n int32) time.Duration { return time.Duration(n) * time.Second }

	// The operator's Secret, through the keys volume's items as the kubelet
	// projects them.
	keys := testenv.FakeKeysFor("adopt", env["CARDANO_NETWORK"])
	operator := map[string][]byte{"hot.skey": keys["kes.skey"], "vrf.skey": keys["vrf.skey"], "op.cert": keys["node.cert"]}
	secret := map[string][]byte{}
	for _, it := range volume(t, &pod, "forge-manager-keys").Secret.Items {
		secret[it.Path] = operator[it.Key]
	}
	mounts := map[string]string{}
	for _, m := range sidecar.VolumeMounts {
		switch m.Name {
		case "forge-manager-ipc":
			mounts[m.MountPath] = "ipc"
		case "forge-manager-keys":
			mounts[m.MountPath] = "secrets"
		}
	}
	if mountOf(node, "/ipc") != "forge-manager-ipc" || len(mounts) != 2 {
		t.Fatalf("mounts %v: want the sidecar's /ipc and /secrets, and the node's /ipc", mounts)
	}

	fm, standIn := testBinaries(t)
	tc, err := testenv.NewCluster(controlPlane(t), newTenant(t), fm, standIn, secret)
	if err != nil {
		t.Fatal(err)
	}
	tc.Probe = testenv.Probe{Period: sec(lp.PeriodSeconds), Fails: int(lp.FailureThreshold), Timeout: sec(lp.TimeoutSeconds), Grace: sec(int32(*lp.TerminationGracePeriodSeconds))}
	tc.Edit = func(_ string, s *testenv.PodSpec) {
		s.Env = env // the rendered settings only: no DEADMAN_PROBE_* beyond them
		s.UID, s.NodeUID = int(*pod.SecurityContext.RunAsUser), -1
		s.Mounts, s.OwnNodeArgs, s.ProbeCommand = mounts, true, lp.Exec.Command
		// The stand-in's boot phases, shortened as in every pod test.
		s.NodeArgs = append(slices.Clone(nodeArgs), "--early-window", "200ms", "--replay", "1s")
	}
	c := &cluster{Cluster: tc, t: t, begun: testenv.Monotonic()}
	t.Cleanup(c.stop)
	for _, name := range []string{adoptProducer + "-0", adoptProducer + "-1"} {
		c.start(name, nil)
	}
	// A new pool's first leader starts one LEASE_DURATION (15 s) after its pods.
	leader, _ := c.settled(c.begun, 40*time.Second)
	p := c.Pod(leader)
	if n := c.Pod(leader).ProbeFailures(); n != 0 {
		t.Errorf("the dead-man probe failed %d times on a healthy leader", n)
	}

	// The leader's sidecar dies and stays down: only the rendered probe
	// can stop its node, by the renew deadline + 4 s (README, timing).
	p.SetRestartDelay("forge-manager", 10*time.Minute)
	killed := testenv.Monotonic()
	if err := p.Signal("forge-manager", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, leader+"'s node stops forging", func() bool { return !slices.Contains(c.forgers(), leader) })
	next, _ := c.settled(killed, 30*time.Second)
	if next == leader {
		t.Fatalf("%s forges again without its sidecar", leader)
	}
	if p.ProbeFailures() < tc.Probe.Fails || p.Restarts("cardano-node") == 0 {
		t.Errorf("probe failures %d, node restarts %d: the rendered dead-man probe did not restart the node", p.ProbeFailures(), p.Restarts("cardano-node"))
	}
	c.checkNoOverlap()
}
