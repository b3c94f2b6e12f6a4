package apiserver

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/streaming"
	"k8s.io/apimachinery/pkg/watch"
	restwatch "k8s.io/client-go/rest/watch"

	"github.com/klab-dev/klab/cluster/store"
)

// watch streams changes: the current objects first (for resourceVersion
// "" or "0", or with sendInitialEvents), then every change after the
// starting revision. A revision that etcd compacted away ends the stream
// with a 410 Gone ERROR event, and the client lists again.
func (s *Server) watch(w http.ResponseWriter, req *request) error {
	o, err := listOptions(req.Request)
	if err != nil {
		return err
	}
	if req.name != "" {
		sel := fields.OneTermEqualSelector("metadata.name", req.name)
		if o.FieldSelector != "" {
			o.FieldSelector += "," + sel.String()
		} else {
			o.FieldSelector = sel.String()
		}
	}
	sel, err := s.selector(req.res, o)
	if err != nil {
		return err
	}
	out, ok := negotiate(req.Header.Get("Accept"), true, transformAs)
	if !ok || out.media == mediaYAML {
		return statusError(http.StatusNotAcceptable, metav1.StatusReasonNotAcceptable, "watch streams JSON or protobuf: ask for application/json")
	}
	if req.res.gv.Group == "network.klab.dev" && out.media == mediaProtobuf {
		out.media = mediaJSON
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		return apierrors.NewInternalError(errors.New("the connection cannot stream"))
	}
	var after int64
	initial := o.ResourceVersion == "" || o.ResourceVersion == "0"
	if o.SendInitialEvents != nil {
		if o.ResourceVersionMatch != metav1.ResourceVersionMatchNotOlderThan || !o.AllowWatchBookmarks {
			return apierrors.NewBadRequest("sendInitialEvents needs resourceVersionMatch=NotOlderThan and allowWatchBookmarks=true")
		}
		initial = *o.SendInitialEvents
	}
	if !initial || o.SendInitialEvents != nil && o.ResourceVersion != "" && o.ResourceVersion != "0" {
		if after, err = store.ParseRevision(o.ResourceVersion); err != nil {
			return apierrors.NewBadRequest(err.Error())
		}
	}
	timeout := time.Duration(30+rand.IntN(30)) * time.Minute
	if o.TimeoutSeconds != nil && *o.TimeoutSeconds > 0 {
		timeout = time.Duration(*o.TimeoutSeconds) * time.Second
	}
	ctx, cancel := context.WithTimeout(req.Context(), timeout)
	defer cancel()

	var items []runtime.Object
	if initial {
		r, err := s.store.List(ctx, req.res.listPrefix(req.namespace), store.ListOptions{Revision: after, Filter: func(obj runtime.Object) bool { return sel.matches(req.res, obj) }}, req.res.newObj)
		if err != nil {
			return storeError(err, req.res.gr(), "")
		}
		items, after = r.Items, r.Revision
	}

	enc := newEventEncoder(w, out, req, flusher)
	w.Header().Set("Content-Type", out.media)
	w.Header().Set("Cache-Control", "no-cache, private")
	w.WriteHeader(http.StatusOK)
	flusher.Flush()
	for _, it := range items {
		if err := enc.send(watch.Added, it); err != nil {
			return nil
		}
	}
	if o.SendInitialEvents != nil && *o.SendInitialEvents {
		if err := enc.send(watch.Bookmark, s.bookmark(req.res, after, true)); err != nil {
			return nil
		}
	}
	events := s.store.Watch(ctx, req.res.listPrefix(req.namespace), store.WatchOptions{After: after, Progress: o.AllowWatchBookmarks, Prev: !sel.everything()}, req.res.newObj)
	for ev := range events {
		typ, obj := watch.EventType(""), ev.Object
		switch ev.Type {
		case watch.Added:
			if sel.matches(req.res, ev.Object) {
				typ = watch.Added
			}
		case watch.Modified:
			now, before := sel.matches(req.res, ev.Object), ev.Prev == nil || sel.matches(req.res, ev.Prev)
			switch {
			case now && before:
				typ = watch.Modified
			case now:
				typ = watch.Added
			case before:
				typ = watch.Deleted
			}
		case watch.Deleted:
			if sel.matches(req.res, ev.Prev) {
				typ = watch.Deleted
			}
		case watch.Bookmark:
			if o.AllowWatchBookmarks && out.as == "" {
				typ, obj = watch.Bookmark, s.bookmark(req.res, ev.Revision, false)
			}
		case watch.Error:
			st := storeError(ev.Err, req.res.gr(), "").(apierrors.APIStatus).Status()
			if errors.Is(ev.Err, store.ErrCompacted) {
				st = apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %d (%d)", after, ev.Revision)).ErrStatus
			}
			enc.send(watch.Error, &st)
			return nil
		}
		if typ == "" {
			continue
		}
		if err := enc.send(typ, obj); err != nil {
			return nil
		}
	}
	return nil
}

// bookmark is an object of the resource's kind carrying only a revision.
func (s *Server) bookmark(res *resource, rev int64, initialEnd bool) runtime.Object {
	obj := res.newObj()
	m := accessor(obj)
	m.SetResourceVersion(strconv.FormatInt(rev, 10))
	if initialEnd {
		m.SetAnnotations(map[string]string{metav1.InitialEventsAnnotationKey: "true"})
	}
	return obj
}

// eventEncoder writes watch events in the client's format.
type eventEncoder struct {
	enc     *restwatch.Encoder
	out     output
	req     *request
	flusher http.Flusher
}

func newEventEncoder(w http.ResponseWriter, out output, req *request, f http.Flusher) *eventEncoder {
	info, _ := runtime.SerializerInfoForMediaType(codecs.SupportedMediaTypes(), out.media)
	framed := info.StreamSerializer.Framer.NewFrameWriter(w)
	return &eventEncoder{
		enc:     restwatch.NewEncoder(streaming.NewEncoder(framed, info.StreamSerializer.Serializer), info.Serializer),
		out:     out,
		req:     req,
		flusher: f,
	}
}

func (e *eventEncoder) send(typ watch.EventType, obj runtime.Object) error {
	if typ != watch.Error && typ != watch.Bookmark {
		switch e.out.as {
		case "Table":
			t, err := toTable(e.req.res, obj, e.req.URL.Query().Get("includeObject"))
			if err != nil {
				return err
			}
			obj = t
		case "PartialObjectMetadata", "PartialObjectMetadataList":
			obj = partialOf(obj)
		}
	}
	if err := setKind(obj); err != nil {
		return err
	}
	if err := e.enc.Encode(&watch.Event{Type: typ, Object: obj}); err != nil {
		return err
	}
	e.flusher.Flush()
	return nil
}
