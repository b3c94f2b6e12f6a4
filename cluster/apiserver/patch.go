package apiserver

import (
	"encoding/json"
	"fmt"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
)

// applyPatch applies a patch of type pt to cur's JSON and returns the
// patched JSON.
func applyPatch(pt types.PatchType, cur runtime.Object, patch []byte) ([]byte, error) {
	if err := setKind(cur); err != nil {
		return nil, err
	}
	orig, err := json.Marshal(cur)
	if err != nil {
		return nil, err
	}
	var out []byte
	switch pt {
	case types.JSONPatchType:
		p, err := jsonpatch.DecodePatch(patch)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("the body is not a JSON patch (a list of operations like [{\"op\":\"replace\",\"path\":\"/spec/replicas\",\"value\":3}]): %v", err))
		}
		if out, err = p.Apply(orig); err != nil {
			return nil, statusError(http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, fmt.Sprintf("the JSON patch cannot be applied: %v", err))
		}
	case types.MergePatchType:
		if !json.Valid(patch) {
			return nil, apierrors.NewBadRequest("the body is not a JSON merge patch: it is not valid JSON")
		}
		if out, err = jsonpatch.MergePatch(orig, patch); err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("JSON merge patch: %v", err))
		}
	case types.StrategicMergePatchType:
		if !json.Valid(patch) {
			return nil, apierrors.NewBadRequest("the body is not a strategic merge patch: it is not valid JSON")
		}
		fresh, err := scheme.New(cur.GetObjectKind().GroupVersionKind())
		if err != nil {
			return nil, err
		}
		if out, err = strategicpatch.StrategicMergePatch(orig, patch, fresh); err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("strategic merge patch: %v", err))
		}
	default:
		return nil, unsupportedMedia(fmt.Sprintf("unsupported patch type %q", pt))
	}
	return out, nil
}
