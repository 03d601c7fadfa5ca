import json,sys,statistics as st
rows=[]
for f in sys.argv[1:]:
    d=json.load(open(f))
    rs=d['rows'] if isinstance(d,dict) and 'rows' in d else d
    rows.append(rs)
def get(rs,sc,impl,th=1,reg=None):
    for r in rs:
        if r['scenario']==sc and r['impl']==impl and r['threads']==th and (reg is None or r['regions']==reg):
            return r['ns_per_op']
impls=sorted({r['impl'] for rs in rows for r in rs if r['scenario'].startswith('lookup-window')})
for impl in impls:
    a=[get(rs,'lookup-window',impl)/get(rs,'lookup-same',impl) for rs in rows]
    b=[get(rs,'lookup-window-random',impl,reg=65536)/get(rs,'lookup-random',impl,reg=65536) for rs in rows]
    print(f"{impl:14s} window/same median {st.median(a):.2f} (runs {' '.join('%.2f'%x for x in a)})  window-random/random median {st.median(b):.2f} (runs {' '.join('%.2f'%x for x in b)})")
