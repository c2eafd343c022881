package api

import (
	"reflect"
	"testing"
)

// Inputs are what Python 2's str() prints for the managers' nodes_info
// and context (conpaas/core/callbacker.py posts them through
// https_post, which applies str() to every value).
func TestPyLiteral(t *testing.T) {
	cases := []struct {
		in   string
		want any
	}{
		{`[{'cloud': 'default', 'role': 'node'}]`, []any{map[string]any{"cloud": "default", "role": "node"}}},
		{`[{u'cloud': u'default', 'role': 'backend', 'inst_type': None}]`, []any{map[string]any{"cloud": "default", "role": "backend", "inst_type": nil}}},
		{`[{'volumes': [{'vol_name': 'mysql-%(vm_id)s', 'vol_size': 1024, 'dev_name': 'sdb'}], 'cloud': 'default', 'role': 'mysql'}]`,
			[]any{map[string]any{"cloud": "default", "role": "mysql", "volumes": []any{map[string]any{"vol_name": "mysql-%(vm_id)s", "vol_size": int64(1024), "dev_name": "sdb"}}}}},
		{`{}`, map[string]any{}},
		{`{'mysql_username': 'mysqldb', 'mysql_password': "it's"}`, map[string]any{"mysql_username": "mysqldb", "mysql_password": "it's"}},
		{`{'STRING': 'helloworld', 'x': True, 'y': 1.5}`, map[string]any{"STRING": "helloworld", "x": true, "y": 1.5}},
		{`[{"cloud": "default"}]`, []any{map[string]any{"cloud": "default"}}},
	}
	for _, c := range cases {
		got, err := parsePyLiteral(c.in)
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: got %#v\nwant %#v", c.in, got, c.want)
		}
	}
	for _, bad := range []string{`[{'a': }]`, `{'a' 1}`, `__import__('os')`, `['x'`} {
		if _, err := parsePyLiteral(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
