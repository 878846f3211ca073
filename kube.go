package main

// The one API client, and the error every API call returns: wrapped with
// the operation and the object's name, so a log line says which call on
// which object failed.

import (
	"errors"
	"fmt"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// restConfig is the pod's ServiceAccount in a cluster, else the kubeconfig
// file (KUBECONFIG).
func restConfig(inCluster bool, kubeconfig string) (*rest.Config, error) {
	if inCluster {
		rc, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster API config: %w", err)
		}
		return rc, nil
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, &configError{[]string{fmt.Sprintf("KUBECONFIG=%q: %v", kubeconfig, err)}}
	}
	return rc, nil
}

// newRESTClient is the one API client: client-go's REST client with only
// the coordination/v1 types registered (custom resources travel as JSON), so
// the binary carries no generated clientset.
func newRESTClient(rc *rest.Config) (*rest.RESTClient, error) {
	rc = rest.CopyConfig(rc)
	scheme := runtime.NewScheme()
	if err := coordinationv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	// The API server's error bodies are v1 Status objects: registered, a
	// 403 says who may not do what, instead of "unknown".
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	rc.APIPath = "/apis"
	rc.GroupVersion = &coordinationv1.SchemeGroupVersion
	rc.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	rc.ContentType = runtime.ContentTypeJSON
	rc.UserAgent = "forge-manager/" + version
	// HTTP/1.1: a request that timed out takes its connection with it, so
	// after a partition the next request dials afresh instead of queueing
	// on a dead HTTP/2 connection until its health check notices (30-45s).
	rc.TLSClientConfig.NextProtos = []string{"http/1.1"}
	// Far above the ~1 request/s a replica sends; the limiter must never
	// make a renew wait.
	rc.QPS, rc.Burst = 50, 100
	return rest.RESTClientFor(rc)
}

// wrapAPI names the operation and object; apierrors.Is* still see through.
func wrapAPI(op, kind, ns, name string, err error) error {
	if err == nil {
		return nil
	}
	return &apiError{op: op, err: fmt.Errorf("%s %s %s/%s: %w", op, kind, ns, name, err)}
}

// apiError carries the operation for the api_errors metric.
type apiError struct {
	op  string
	err error
}

func (e *apiError) Error() string { return e.err.Error() }

func (e *apiError) Unwrap() error { return e.err }

// apiOp is the operation of a failed API call, for metrics.
func apiOp(err error) string {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.op
	}
	return "other"
}

// raceLost tells an error that only means another replica wrote first (or
// the Lease is not there yet): expected in an election, not trouble.
func raceLost(err error) bool {
	return apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) || apierrors.IsNotFound(err)
}

func ptr[T any](v T) *T { return &v }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func derefInt(i *int32) int32 {
	if i == nil {
		return 0
	}
	return *i
}
