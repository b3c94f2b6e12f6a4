package store

import (
	"encoding/json"
	"fmt"
	"reflect"

	"k8s.io/apimachinery/pkg/runtime"
)

// Codec turns objects into stored values and back.
type Codec interface {
	Encode(obj runtime.Object) ([]byte, error)
	// Decode replaces into with the decoded value.
	Decode(data []byte, into runtime.Object) error
}

// JSONCodec stores objects as JSON with their apiVersion and kind, as
// the Kubernetes API server's JSON storage does.
func JSONCodec(scheme *runtime.Scheme) Codec { return jsonCodec{scheme} }

type jsonCodec struct{ scheme *runtime.Scheme }

func (c jsonCodec) Encode(obj runtime.Object) ([]byte, error) {
	gvks, _, err := c.scheme.ObjectKinds(obj)
	if err != nil {
		return nil, err
	}
	obj.GetObjectKind().SetGroupVersionKind(gvks[0])
	return json.Marshal(obj)
}

func (c jsonCodec) Decode(data []byte, into runtime.Object) error {
	v := reflect.ValueOf(into)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return fmt.Errorf("decode into %T: not a pointer", into)
	}
	v.Elem().Set(reflect.Zero(v.Elem().Type()))
	return json.Unmarshal(data, into)
}
