package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// imageBundle is the CA bundle the image carries at
// /etc/ssl/certs/ca-certificates.crt (hack/image.sh checks it is this file).
const imageBundle = "hack/ca-certificates.crt"

// httpsHelperEnv, when set to a URL, makes TestHealthCheckHTTPS one health
// check of that URL in this process, printed after httpsResult.
const (
	httpsHelperEnv = "FORGE_TEST_HTTPS_HELPER_URL"
	httpsResult    = "health check result: "
)

// TestHealthCheckHTTPS: an https:// HEALTH_CHECK_ENDPOINT is verified against
// the roots the binary loads, as it loads them: Go reads the system roots once
// per process, from SSL_CERT_FILE (else /etc/ssl/certs/ca-certificates.crt,
// which the image carries) and SSL_CERT_DIR (else /etc/ssl/certs). So each
// case runs one check in a fresh process, this test binary again, with the
// case's two variables; the host's own roots never count.
func TestHealthCheckHTTPS(t *testing.T) {
	if u := os.Getenv(httpsHelperEnv); u != "" {
		h := newHealthChecker(u, time.Second, 5*time.Second, 1, slog.New(slog.NewTextHandler(io.Discard, nil)))
		fmt.Printf("%s%v\n", httpsResult, h.probe(context.Background(), h.client()))
		return
	}
	caPEM, cert := testCA(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok")
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are the point
	srv.StartTLS()
	defer srv.Close()
	url := srv.URL + "/health"

	dir := t.TempDir()
	caFile, caDir, emptyDir := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca"), filepath.Join(dir, "empty")
	for _, d := range []string{caDir, emptyDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{caFile, filepath.Join(caDir, "ca.crt")} {
		if err := os.WriteFile(f, caPEM, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bundle, err := filepath.Abs(imageBundle)
	if err != nil {
		t.Fatal(err)
	}
	const unknownCA = "tls: failed to verify certificate: x509: certificate signed by unknown authority"
	tests := []struct {
		name, certFile, certDir string
		want                    string // "<nil>" for a passing check, else part of the error
	}{
		{"the endpoint's CA as SSL_CERT_FILE", caFile, emptyDir, "<nil>"},
		{"the image's bundle, and the endpoint's CA in SSL_CERT_DIR", bundle, caDir, "<nil>"},
		{"the image's bundle only: public roots do not vouch for a private CA", bundle, emptyDir, unknownCA},
		{"no roots at all (the image before it carried a bundle)", filepath.Join(dir, "none.crt"), emptyDir, unknownCA},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := checkInProcess(t, url, tc.certFile, tc.certDir)
			if tc.want == "<nil>" && got != tc.want {
				t.Errorf("check of %s: %q; want it to pass", url, got)
			}
			if tc.want != "<nil>" && !(strings.Contains(got, tc.want) && strings.Contains(got, url)) {
				t.Errorf("check of %s: %q; want an error naming the URL and %q", url, got, tc.want)
			}
		})
	}
}

// checkInProcess runs one health check of url in a new process with
// SSL_CERT_FILE and SSL_CERT_DIR set, and returns what it printed: "<nil>"
// or the error.
func checkInProcess(t *testing.T, url, certFile, certDir string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHealthCheckHTTPS$", "-test.count=1")
	// The last of duplicate variables wins: these replace any inherited.
	cmd.Env = append(os.Environ(), httpsHelperEnv+"="+url, "SSL_CERT_FILE="+certFile, "SSL_CERT_DIR="+certDir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper process: %v\n%s", err, out)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if r, ok := strings.CutPrefix(sc.Text(), httpsResult); ok {
			return r
		}
	}
	t.Fatalf("helper process printed no %q line:\n%s", httpsResult, out)
	return ""
}

// testCA is a private CA, in PEM, and a server certificate it issued for
// 127.0.0.1: what an in-cluster health endpoint with its own CA serves.
func testCA(t *testing.T) ([]byte, tls.Certificate) {
	t.Helper()
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "forge-manager test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "cardano-node health"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key}
}

// TestImageCABundle: the committed bundle is what hack/ca-certificates.txt
// says hack/ca-certificates.sh made (its sha256 and count), and every block
// in it is a CA certificate Go parses: a hand edit or a broken remake fails
// here, before an image ships roots that verify nothing.
func TestImageCABundle(t *testing.T) {
	data, err := os.ReadFile(imageBundle)
	if err != nil {
		t.Fatal(err)
	}
	txt, err := os.ReadFile("hack/ca-certificates.txt")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^bundle +(\d+) certificates, sha256 ([0-9a-f]{64})$`).FindSubmatch(txt)
	if m == nil {
		t.Fatalf("hack/ca-certificates.txt has no line `bundle N certificates, sha256 HEX`:\n%s", txt)
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != string(m[2]) {
		t.Errorf("%s has sha256 %s; hack/ca-certificates.txt says %s (remake both with make ca-certificates)", imageBundle, got, m[2])
	}
	n := 0
	for rest := data; ; n++ {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			if len(bytes.TrimSpace(rest)) != 0 {
				t.Errorf("%s: %d bytes after certificate %d are not PEM", imageBundle, len(rest), n)
			}
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if b.Type != "CERTIFICATE" || err != nil || !c.IsCA {
			t.Errorf("%s: block %d is %q (parse error %v): want a CA certificate", imageBundle, n+1, b.Type, err)
		}
	}
	if want := string(m[1]); fmt.Sprint(n) != want {
		t.Errorf("%s holds %d certificates; hack/ca-certificates.txt says %s", imageBundle, n, want)
	}
}
