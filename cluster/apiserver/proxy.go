package apiserver

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// kubeletPaths maps a pod subresource to the node agent's path, as the
// kubelet names them.
var kubeletPaths = map[string]string{"log": "containerLogs", "exec": "exec", "attach": "attach", "portforward": "portForward"}

// proxyToNode passes pods/log, exec, attach and portforward through to the
// agent on the pod's node (https://NODE-IP:10250/containerLogs/NS/POD/C,
// /exec/NS/POD/C, …), authenticating with the server's client certificate
// and checking the agent's against the cluster CA. Upgrades (exec's SPDY
// or websocket streams) pass through untouched.
func (s *Server) proxyToNode(w http.ResponseWriter, req *request) error {
	if s.kubelet == nil {
		return apierrors.NewServiceUnavailable("this API server has no client certificate for the node agents: start it with --kubelet-client-certificate and --kubelet-client-key")
	}
	var pod corev1.Pod
	if err := s.store.Get(req.Context(), req.res.key(req.namespace, req.name), 0, &pod); err != nil {
		return storeError(err, req.res.gr(), req.name)
	}
	if pod.Spec.NodeName == "" {
		return apierrors.NewBadRequest(fmt.Sprintf("pod %s is not on a node yet: wait until it is scheduled (kubectl get pod %s -o wide)", pod.Name, pod.Name))
	}
	q := req.URL.Query()
	path := []string{kubeletPaths[req.sub], pod.Namespace, pod.Name}
	if req.sub != "portforward" {
		c, err := pickContainer(&pod, q.Get("container"))
		if err != nil {
			return err
		}
		path = append(path, c)
	}
	q.Del("container")
	if req.sub == "exec" || req.sub == "attach" {
		q = streamParams(q)
	}
	ip, err := s.nodeAddress(req, pod.Spec.NodeName)
	if err != nil {
		return err
	}
	target := &url.URL{Scheme: "https", Host: net.JoinHostPort(ip, strconv.Itoa(s.cfg.KubeletPort)), Path: "/" + strings.Join(path, "/"), RawQuery: q.Encode()}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = target
			pr.Out.Host = target.Host
			pr.Out.Header.Del("Authorization")
		},
		Transport:     s.kubelet,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.writeError(w, r, statusError(http.StatusBadGateway, metav1.StatusReasonServiceUnavailable,
				fmt.Sprintf("error talking to the agent on node %s (%s): %v: is it running? (klab logs --node %s agent)", pod.Spec.NodeName, target.Host, err, pod.Spec.NodeName)))
		},
	}
	proxy.ServeHTTP(w, req.Request)
	return nil
}

// streamParams turns PodExecOptions' query (stdin=true, stdout=true…) into
// the kubelet's (input=1, output=1, error=1, tty=1), as the upstream API
// server does for the node.
func streamParams(q url.Values) url.Values {
	out := url.Values{}
	for from, to := range map[string]string{"stdin": "input", "stdout": "output", "stderr": "error", "tty": "tty"} {
		if v := q.Get(from); v == "true" || v == "1" {
			out.Set(to, "1")
		}
	}
	out["command"] = q["command"]
	return out
}

func pickContainer(pod *corev1.Pod, name string) (string, error) {
	var names []string
	for _, c := range append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...) {
		names = append(names, c.Name)
	}
	if name == "" {
		if len(pod.Spec.Containers) == 1 {
			return pod.Spec.Containers[0].Name, nil
		}
		return "", apierrors.NewBadRequest(fmt.Sprintf("a container name must be specified for pod %s, choose one of: [%s]", pod.Name, strings.Join(names, " ")))
	}
	if !slices.Contains(names, name) {
		return "", apierrors.NewBadRequest(fmt.Sprintf("container %s is not valid for pod %s: its containers are [%s]", name, pod.Name, strings.Join(names, " ")))
	}
	return name, nil
}

// nodeAddress is a node's InternalIP, where its agent listens.
func (s *Server) nodeAddress(req *request, node string) (string, error) {
	res := s.reg.lookup(corev1.SchemeGroupVersion, "nodes")
	var n corev1.Node
	if err := s.store.Get(req.Context(), res.key("", node), 0, &n); err != nil {
		return "", storeError(err, res.gr(), node)
	}
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address, nil
		}
	}
	return "", apierrors.NewServiceUnavailable(fmt.Sprintf("node %s reports no InternalIP address: has its agent registered it?", node))
}
