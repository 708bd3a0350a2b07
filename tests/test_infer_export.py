"Deployment as a user runs it: hancross-infer and hancross-export on a checkpoint trained for one epoch."
import json, os, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd
import pytest
from PIL import Image
from hancross.models.registry import load_config
from hancross.testing import tiny_dataset
from hancross.data.dataset import to_utc, MarketData

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}

@pytest.fixture(scope='module')
def ck(tmp_path_factory):
    "A tiny dataset at 24 px and a HANCross (CPU config) checkpoint trained on it for one epoch"
    from hancross.train.fit import fit
    root = tmp_path_factory.mktemp('dep')
    data = tiny_dataset(root/'tiny', n_sales=120, size=24)
    fit(load_config(ROOT/'configs'/'hancross_cpu.yaml').with_training(num_epochs=1), data, 'x', root/'exp', quiet=True)
    return data, root/'exp'/'x'/'best_model.pth', root

def run(*args):
    return subprocess.run([str(BIN/args[0]), *map(str, args[1:])], capture_output=True, text=True, env=ENV)

def one_line_exit2(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and 'Traceback' not in r.stderr, r.stderr
    for n in needles: assert n in lines[0], lines[0]

def a_sample(data):
    "A test-split sample: its row and its window (the dataset's `window` bars strictly before its time) written alone"
    md = MarketData(data)
    row = md.df.iloc[int(md.split_idx['test'][0])]
    bars = pd.read_csv(data/'temporal'/f'{row.series}.csv')
    return row, bars[to_utc(bars.time) < row.time].tail(md.window)

def dataset_prediction(model_path, data, sample_id, last_sale:bool=True) -> float:
    "The checkpoint's log-price prediction for one test sample from the dataset's own inputs (optionally without the token's last sale)"
    import torch
    from hancross.train.core import load_model
    from hancross.data.dataset import hancross_dls
    model, ckd = load_model(model_path)
    dls = hancross_dls(data, stats=ckd['stats']); ds = dls[2].dataset
    i = list(dls.md.df['sample_id'].to_numpy()[ds.idx.numpy()]).index(sample_id)
    *xb, _ = ds.batch([i])
    if not last_sale: xb[3] = xb[3].clone(); xb[3][:, :2] = 0    # what one sample's inference knows: no earlier sale of the token
    with torch.no_grad(): return float(ds.untarget(model(*xb), [i])[0])

def test_reference_prediction_is_the_checkpoints(ck):
    "`dataset_prediction`, the reference the inference test below compares with, is what `predict_checkpoint` gives"
    from hancross.train.learner import predict_checkpoint
    data, model, root = ck
    p, y, ids = predict_checkpoint(model, data)
    row, _ = a_sample(data)
    assert abs(dataset_prediction(model, data, row.sample_id) - p[list(ids).index(row.sample_id)]) < 1e-5   # the reference is the checkpoint's

def test_infer_matches_the_dataset_inputs(ck):
    data, model, root = ck
    row, win = a_sample(data)
    win.to_csv(root/'w.csv', index=False)
    r = run('hancross-infer', '--checkpoint', model, '--visual_input', data/'visual'/row.image, '--temporal_input', root/'w.csv',
            '--traits', row.traits)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert abs(out['log_price'] - dataset_prediction(model, data, row.sample_id, last_sale=False)) < 1e-5
    assert abs(out['price_eth'] - np.exp(out['log_price'])) < 1e-6 * out['price_eth']
    assert 0 < out['gate']['visual'] < 1 and 1 <= out['attention']['level'] <= 4 and out['attention']['top_steps']

def test_infer_data_dir(ck):
    data, model, root = ck
    r = run('hancross-infer', '--checkpoint', model, '--data_dir', data, '--output_format', 'csv', '--out', root/'p.csv')
    assert r.returncode == 0, r.stderr
    df = pd.read_csv(root/'p.csv')
    assert len(df) == len(json.loads((data/'splits'/'test.json').read_text()))
    assert {'sample_id', 'log_price', 'price_eth', 'target', 'gate_visual', 'level'} <= set(df.columns)

def test_infer_refuses_other_feature_order(ck, tmp_path):
    "A dataset whose series features come in another order than the checkpoint's is refused, never misread"
    import shutil
    data, model, root = ck
    d = Path(shutil.copytree(data, tmp_path/'reordered'))
    meta = json.loads((d/'metadata.json').read_text()); meta['series_features'] = meta['series_features'][::-1]
    (d/'metadata.json').write_text(json.dumps(meta))
    one_line_exit2(run('hancross-infer', '--checkpoint', model, '--data_dir', d, '--out', tmp_path/'p.json'), 'reordered', 'would read the wrong columns')
    assert not (tmp_path/'p.json').exists()

def test_infer_bad_inputs(ck):
    data, model, root = ck
    row, win = a_sample(data)
    img, good = data/'visual'/row.image, root/'good.csv'
    win.to_csv(good, index=False)
    Image.new('RGB', (32, 32)).save(root/'big.png')
    win[:10].to_csv(root/'short.csv', index=False)
    bad = win.astype({'log_volume': object}); bad.iloc[3, bad.columns.get_loc('log_volume')] = 'x1'; bad.to_csv(root/'nan.csv', index=False)
    win.drop(columns='n_sales').to_csv(root/'cols.csv', index=False)
    one_line_exit2(run('hancross-infer', '--checkpoint', model, '--visual_input', root/'none.png', '--temporal_input', good), 'none.png', 'not found')
    one_line_exit2(run('hancross-infer', '--checkpoint', model, '--visual_input', root/'big.png', '--temporal_input', good), 'big.png', '32x32')
    one_line_exit2(run('hancross-infer', '--checkpoint', model, '--visual_input', img, '--temporal_input', root/'short.csv'), 'short.csv', '10 rows')
    one_line_exit2(run('hancross-infer', '--checkpoint', model, '--visual_input', img, '--temporal_input', root/'nan.csv'), 'nan.csv line 5', 'log_volume')
    one_line_exit2(run('hancross-infer', '--checkpoint', model, '--visual_input', img, '--temporal_input', root/'cols.csv'), 'cols.csv', 'n_sales')
    one_line_exit2(run('hancross-infer', '--checkpoint', root/'nothing.pth', '--visual_input', img), 'nothing.pth')

def test_export_parity_and_report(ck):
    data, model, root = ck
    r = run('hancross-export', '--checkpoint', model, '--out', root/'onnx'/'m.onnx', '--data_dir', data)
    assert r.returncode == 0, r.stderr
    rep = json.loads((root/'onnx'/'m.report.json').read_text())
    assert rep['parity']['max_abs_diff'] <= 1e-4 and rep['opset'] == 17
    q = rep['quantization']
    assert q['size_bytes']['onnx_int8'] < q['size_bytes']['onnx_fp32'] and q['size_bytes']['torch_int8'] < q['size_bytes']['torch_fp32']
    assert set(q['accuracy_change']['torch']) == {'r2', 'rmse'} and (root/'onnx'/'m.int8.onnx').is_file()
    import onnxruntime as ort
    s = ort.InferenceSession(str(root/'onnx'/'m.onnx'), providers=['CPUExecutionProvider'])
    assert [i.name for i in s.get_inputs()] == ['img', 'series', 'vol', 'meta'] and s.get_inputs()[0].shape[0] == 'batch'

def test_export_bad_input(ck):
    data, model, root = ck
    one_line_exit2(run('hancross-export', '--checkpoint', root/'nothing.pth', '--out', root/'x.onnx'), 'nothing.pth')
    one_line_exit2(run('hancross-export', '--checkpoint', model, '--out', root/'x.onnx', '--data_dir', root/'nodata'), 'nodata')
