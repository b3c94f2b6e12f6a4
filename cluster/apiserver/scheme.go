package apiserver

import (
	"fmt"
	"mime"
	"strings"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	jsonserializer "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	"github.com/klab-dev/klab/cluster/api"
	"github.com/klab-dev/klab/cluster/store"
)

// scheme knows every type the server serves: the Kubernetes API groups,
// klab's own group, meta/v1 (Status, Table, options) and discovery.
var (
	scheme         = runtime.NewScheme()
	codecs         serializer.CodecFactory
	parameterCodec = runtime.NewParameterCodec(scheme)
)

func init() {
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme, api.AddToScheme, metav1.AddMetaToScheme, apidiscoveryv2.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	codecs = serializer.NewCodecFactory(scheme)
}

// Media types.
const (
	mediaJSON     = "application/json"
	mediaYAML     = "application/yaml"
	mediaProtobuf = "application/vnd.kubernetes.protobuf"
)

var (
	jsonSerializer       = jsonserializer.NewSerializerWithOptions(jsonserializer.DefaultMetaFactory, scheme, scheme, jsonserializer.SerializerOptions{})
	prettyJSONSerializer = jsonserializer.NewSerializerWithOptions(jsonserializer.DefaultMetaFactory, scheme, scheme, jsonserializer.SerializerOptions{Pretty: true})
	yamlSerializer       = jsonserializer.NewSerializerWithOptions(jsonserializer.DefaultMetaFactory, scheme, scheme, jsonserializer.SerializerOptions{Yaml: true})
	strictJSON           = jsonserializer.NewSerializerWithOptions(jsonserializer.DefaultMetaFactory, scheme, scheme, jsonserializer.SerializerOptions{Strict: true})
	strictYAML           = jsonserializer.NewSerializerWithOptions(jsonserializer.DefaultMetaFactory, scheme, scheme, jsonserializer.SerializerOptions{Yaml: true, Strict: true})
	protoSerializer      = protobuf.NewSerializer(scheme, scheme)
)

// setKind sets an object's apiVersion and kind from the scheme.
func setKind(obj runtime.Object) error {
	gvks, _, err := scheme.ObjectKinds(obj)
	if err != nil {
		return err
	}
	obj.GetObjectKind().SetGroupVersionKind(gvks[0])
	return nil
}

// mediaRange is one entry of an Accept header.
type mediaRange struct {
	typ    string // "application/json"
	params map[string]string
}

func parseAccept(h string) []mediaRange {
	if strings.TrimSpace(h) == "" {
		return []mediaRange{{typ: "*/*"}}
	}
	var out []mediaRange
	for _, part := range strings.Split(h, ",") {
		t, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		if q, ok := params["q"]; ok && q == "0" {
			continue
		}
		out = append(out, mediaRange{typ: t, params: params})
	}
	return out
}

// output is what a response is encoded as.
type output struct {
	media  string // mediaJSON, mediaYAML or mediaProtobuf
	as     string // "", "Table", "PartialObjectMetadata", "PartialObjectMetadataList", "APIGroupDiscoveryList"
	pretty bool
}

// negotiate picks the first output in Accept that the server can make.
// proto says whether the object has a protobuf form; as lists the
// transformations the endpoint offers ("Table", …) by the group they
// belong to.
func negotiate(accept string, proto bool, as map[string]schema.GroupVersion) (output, bool) {
	for _, m := range parseAccept(accept) {
		var o output
		switch m.typ {
		case mediaJSON, "application/*", "*/*":
			o.media = mediaJSON
		case mediaYAML:
			o.media = mediaYAML
		case mediaProtobuf:
			if !proto {
				continue
			}
			o.media = mediaProtobuf
		default:
			continue
		}
		if a := m.params["as"]; a != "" {
			gv, ok := as[a]
			if !ok || m.params["g"] != gv.Group || m.params["v"] != gv.Version {
				continue
			}
			if o.media == mediaProtobuf && a == "Table" {
				continue
			}
			o.as = a
		}
		o.pretty = m.params["pretty"] == "1" || m.params["pretty"] == "true"
		return o, true
	}
	return output{}, false
}

// contentType is the response's Content-Type for o.
func (o output) contentType() string {
	switch o.as {
	case "Table", "PartialObjectMetadata", "PartialObjectMetadataList":
		return fmt.Sprintf("%s;as=%s;g=meta.k8s.io;v=v1", o.media, o.as)
	case "APIGroupDiscoveryList":
		return o.media + ";g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
	}
	return o.media
}

// encoder returns the serializer for o.
func (o output) encoder() runtime.Encoder {
	switch o.media {
	case mediaYAML:
		return yamlSerializer
	case mediaProtobuf:
		return protoSerializer
	}
	if o.pretty {
		return prettyJSONSerializer
	}
	return jsonSerializer
}

// encode sets obj's kind and encodes it for o.
func (o output) encode(obj runtime.Object) ([]byte, error) {
	if err := setKind(obj); err != nil {
		return nil, err
	}
	return runtime.Encode(o.encoder(), obj)
}

// StorageCodec is how the server stores objects in etcd: JSON with
// apiVersion and kind, for every type it serves.
func StorageCodec() store.Codec { return store.JSONCodec(scheme) }
