package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"strconv"

	"github.com/valyala/fasthttp"
)

// decodeJSON reads the request body into v strictly: one JSON object, no
// unknown fields, nothing after it. The body's size was capped by the
// server before the handler ran.
func decodeJSON(ctx *fasthttp.RequestCtx, v any) *apiError {
	if ct := ctx.Request.Header.ContentType(); len(ct) > 0 {
		mt, _, err := mime.ParseMediaType(string(ct))
		if err != nil || mt != "application/json" {
			return &apiError{Status: fasthttp.StatusUnsupportedMediaType, Code: codeUnsupportedMedia, Message: "Content-Type must be application/json"}
		}
	}
	body := ctx.PostBody()
	if len(bytes.TrimSpace(body)) == 0 {
		return badRequest("request body is empty; a JSON object is expected")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("invalid JSON: %s", describeJSONError(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("invalid JSON: unexpected data after the object")
	}
	return nil
}

// describeJSONError keeps the decoder's message useful without echoing
// request data (field values may be secrets).
func describeJSONError(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return "syntax error at byte " + strconv.FormatInt(syn.Offset, 10)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return "field " + typ.Field + " must be " + jsonKind(typ.Type.Kind().String())
		}
		return "a JSON object is expected"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected end of input"
	}
	// DisallowUnknownFields: `json: unknown field "x"`; time and other
	// text decoders name the problem without the value.
	return err.Error()
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string", "ptr":
		return "a string"
	case "int", "int64", "int32", "uint16":
		return "an integer"
	case "bool":
		return "a boolean"
	case "struct", "map":
		return "an object"
	case "slice":
		return "an array"
	}
	return "of another type"
}
