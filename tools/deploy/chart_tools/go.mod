module stepwise.dev/tools/deploy/chart

go 1.24

// The tools `make chart` builds (tools/deploy/chart.py) and the sources of the committed JSON Schemas; go.sum
// checks each download.
require (
	helm.sh/helm/v4 v4.3.2
	github.com/yannh/kubeconform v0.8.0
	k8s.io/kubernetes v1.37.2
	sigs.k8s.io/controller-tools v0.23.0
	github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring v0.95.2
)
