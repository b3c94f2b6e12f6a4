package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/klab-dev/klab/cluster/store"
)

// storeError turns a store error about one object into the API's.
func storeError(err error, gr schema.GroupResource, name string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound):
		return apierrors.NewNotFound(gr, name)
	case errors.Is(err, store.ErrExists):
		return apierrors.NewAlreadyExists(gr, name)
	case errors.Is(err, store.ErrConflict):
		return conflict(gr, name)
	case errors.Is(err, store.ErrCompacted):
		return apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %v: start again from a fresh list", err))
	case errors.Is(err, store.ErrFuture):
		return apierrors.NewTimeoutError("Too large resource version: the store has not reached it yet", 1)
	case errors.Is(err, context.DeadlineExceeded):
		return apierrors.NewTimeoutError(fmt.Sprintf("etcd did not answer in time for %s %q: is it up? (klab logs --node MASTER etcd)", gr, name), 1)
	case grpcstatus.Code(err) == codes.Unavailable:
		return apierrors.NewServiceUnavailable(fmt.Sprintf("etcd is unavailable: %v: is it up? (klab logs --node MASTER etcd)", err))
	}
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		return err
	}
	return apierrors.NewInternalError(fmt.Errorf("storage: %w", err))
}

func conflict(gr schema.GroupResource, name string) error {
	return apierrors.NewConflict(gr, name, errors.New("the object has been modified; please apply your changes to the latest version and try again"))
}

// writeError answers with err as a Status object.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var st *metav1.Status
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		s := se.Status()
		st = &s
	} else {
		st = &apierrors.NewInternalError(err).ErrStatus
	}
	if st.Code == 0 {
		st.Code = http.StatusInternalServerError
	}
	st.Status = metav1.StatusFailure
	if st.Code >= 500 && !errors.Is(r.Context().Err(), context.Canceled) {
		s.log.Warn("request failed", "method", r.Method, "path", r.URL.Path, "code", st.Code, "err", st.Message)
	}
	s.writeObject(w, r, int(st.Code), st)
}

// writeObject encodes obj as JSON (or YAML when asked) with code.
func (s *Server) writeObject(w http.ResponseWriter, r *http.Request, code int, obj runtime.Object) {
	o, ok := negotiate(r.Header.Get("Accept"), false, nil)
	if !ok {
		o = output{media: mediaJSON}
	}
	data, err := o.encode(obj)
	if err != nil {
		s.log.Error("encode response", "err", err)
		http.Error(w, "encode response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", o.contentType())
	w.WriteHeader(code)
	w.Write(data)
}
