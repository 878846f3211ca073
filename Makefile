# forge-manager. `make demo` shows the main job; `make test` runs every test
# against a real kube-apiserver; `make help` lists the rest.

VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GOFLAGS_BUILD = -trimpath -ldflags "-s -w -X main.version=$(VERSION)"
PLATFORM   ?= linux/$(shell go env GOARCH)
IMAGE      ?= forge-manager:$(VERSION)
IMAGE_TOOL ?= buildah
GOARCH_OF   = $(word 2,$(subst /, ,$(PLATFORM)))

# The control plane for tests, built once from the Go module proxy and kept
# outside the clone (SPEC 10). Override with FORGE_TESTENV_DIR.
KUBE_VERSION := v1.37.2
ETCD_VERSION := v3.6.16
FORGE_TESTENV_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/forge-manager/testenv-kube-$(KUBE_VERSION)-etcd-$(ETCD_VERSION)
export FORGE_TESTENV_DIR
KUBE_LDFLAGS = -X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) \
	-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37 \
	-X k8s.io/component-base/version.gitTreeState=clean

# Tests run for up to 45 minutes; CI allows 90.
TEST_TIMEOUT ?= 45m

.PHONY: help build test unit testenv lint image demo bench clean

help:
	@echo "make demo     three simulated replicas: election, failover, handover (root)"
	@echo "make test     unit and integration tests against a real kube-apiserver"
	@echo "make unit     unit tests only (no control plane)"
	@echo "make build    static binary ./forge-manager (PLATFORM=linux/arm64 to cross-build)"
	@echo "make image    FROM scratch image with IMAGE_TOOL=buildah|podman|docker"
	@echo "make bench    failover, handover, footprint and API-load figures"
	@echo "make testenv  build kube-apiserver, kubectl and etcd into $(FORGE_TESTENV_DIR)"
	@echo "make lint     gofmt and go vet"

build:
	CGO_ENABLED=0 GOOS=linux GOARCH=$(GOARCH_OF) go build $(GOFLAGS_BUILD) -o forge-manager .

test: testenv
	go test -count=1 -timeout $(TEST_TIMEOUT) ./...

unit:
	go test -count=1 -short ./...

testenv: $(FORGE_TESTENV_DIR)/kube-apiserver $(FORGE_TESTENV_DIR)/kubectl $(FORGE_TESTENV_DIR)/etcd

# No prerequisites on purpose: a binary that exists is up to date, because
# the versions are part of the directory name.
$(FORGE_TESTENV_DIR)/kube-apiserver $(FORGE_TESTENV_DIR)/kubectl:
	@mkdir -p $(FORGE_TESTENV_DIR)
	@echo "building $(@F) $(KUBE_VERSION) from the Go module proxy (about 5 minutes the first time)"
	cd hack/kube && CGO_ENABLED=0 go build -trimpath -ldflags "$(KUBE_LDFLAGS)" -o $@.tmp k8s.io/kubernetes/cmd/$(@F)
	mv $@.tmp $@

$(FORGE_TESTENV_DIR)/etcd:
	@mkdir -p $(FORGE_TESTENV_DIR)
	@echo "building etcd $(ETCD_VERSION) from the Go module proxy"
	cd hack/etcd && CGO_ENABLED=0 go build -trimpath -o $@.tmp go.etcd.io/etcd/server/v3
	mv $@.tmp $@

demo: testenv
	go run ./internal/demo

lint:
	@out=$$(gofmt -l . hack); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet ./...

image: build
	./hack/image.sh "$(IMAGE_TOOL)" "$(PLATFORM)" "$(IMAGE)" "$(VERSION)"

clean:
	rm -f forge-manager
